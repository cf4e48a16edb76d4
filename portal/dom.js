// DOM helpers: elements built from text (never parsed as HTML), tables, times, badges,
// the busy state of a button and the message shown once at the top of the next screen.

let flash = null; // {text, kind} shown once at the top of the next screen

/** An element: h('a', {href: 'x', class: 'y', onclick: fn}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value') {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function $(selector, root) {
  return (root || document).querySelector(selector);
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A time in the browser's zone, its UTC form on hover. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return h('span', {}, iso);
  const utc = `${at.toISOString().replace('.000Z', 'Z')} (UTC)`;
  return h('time', { datetime: iso, title: utc }, at.toLocaleString());
}

export function badge(status) {
  return h('span', { class: `badge badge-${status}` }, status);
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function table(headings, rows, caption) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', {}, h('tr', {}, headings.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows),
    ),
  );
}

export function empty(text, ...more) {
  return h('div', { class: 'empty' }, h('p', {}, text), more);
}

export function link(path, text, attrs) {
  return h('a', Object.assign({ href: path, 'data-nav': true }, attrs || {}), text);
}

/** Runs a button's work with the button busy; errors become a message. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } catch (e) {
    showError(e);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

export function showError(e) {
  const text = e && typeof e.explain === 'function' ? e.explain() : `Something went wrong: ${e.message}`;
  setFlash(text, 'error');
  showFlash();
}

export function setFlash(text, kind) {
  flash = { text, kind: kind || 'ok' };
}

export function showFlash() {
  const box = $('#flash');
  if (!box || !flash) return;
  clear(box).append(flash.text);
  box.className = `flash flash-${flash.kind}`;
  box.hidden = false;
  flash = null;
}
