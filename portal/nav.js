// Addresses and navigation: the portal's own paths, links that draw without a reload,
// pagers and filter bars.

import { h, link, nextId } from './dom.js';

export const PORTAL = new URL(document.baseURI).pathname; // "/portal/" (or "/<stage>/portal/")
const PAGE_SIZE = 20;

let drawer = async () => {};

/** Who draws the screen for the current address (the router). */
export function onRender(fn) {
  drawer = fn;
}

/** Draws the screen for the current address; `moved` puts focus at its top. */
export function render(moved) {
  return drawer(moved);
}

export function here() {
  const path = window.location.pathname;
  const rest = path.startsWith(PORTAL) ? path.slice(PORTAL.length) : '';
  return rest.replace(/\/+$/, '');
}

export function go(path) {
  history.pushState(null, '', PORTAL + path);
  return render(true);
}

/** This screen's address with the query `q`. */
export function address(q) {
  const text = q.toString();
  return `${here()}${text ? `?${text}` : ''}`;
}

/** The screen's query without its page cursors. */
export function withoutCursors(params) {
  const q = new URLSearchParams(params);
  q.delete('after');
  q.delete('before');
  return q;
}

export function pager(pagination, params) {
  const nav = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const to = (key, cursor) => {
    const q = withoutCursors(params);
    q.set(key, cursor);
    return address(q);
  };
  if (pagination.has_previous_page && pagination.start_cursor) {
    nav.append(link(to('before', pagination.start_cursor), '← Newer', { rel: 'prev' }));
  }
  if (pagination.has_next_page && pagination.end_cursor) {
    nav.append(link(to('after', pagination.end_cursor), 'Older →', { rel: 'next' }));
  }
  return nav.childNodes.length ? nav : null;
}

/** On an empty page reached through a cursor: the way back to the newest. */
export function firstPage(params) {
  if (!params.get('after') && !params.get('before')) return null;
  return link(address(withoutCursors(params)), 'Back to the newest');
}

export function pageParams(params) {
  return { limit: PAGE_SIZE, after: params.get('after'), before: params.get('before') };
}

/** A filter bar: selects that navigate on change, keeping the other filters. */
export function filters(label, fields, params) {
  const form = h('form', { class: 'filters', 'aria-label': label });
  for (const f of fields) {
    const id = nextId('filter');
    const select = h(
      'select',
      {
        id,
        name: f.name,
        onchange: () => {
          const q = new URLSearchParams();
          for (const el of form.querySelectorAll('select')) if (el.value) q.set(el.name, el.value);
          go(address(q));
        },
      },
      h('option', { value: '' }, f.any),
      f.options.map(([value, text]) => h('option', { value, selected: params.get(f.name) === value }, text)),
    );
    form.append(h('div', { class: 'field-inline' }, h('label', { for: id }, f.label), select));
  }
  form.addEventListener('submit', (e) => e.preventDefault());
  return form;
}
