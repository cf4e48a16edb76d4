// The tenant portal (SPEC §10): a plain client of the webhooks API, in the browser.
//
// The session link carries its token in the address's fragment (#session=...), which no
// browser sends to a server. The script moves it to this tab's sessionStorage and out of
// the address bar at once, then calls the API on this origin with it as a bearer token;
// the API enforces the session's tenant and scopes (a read-only session is refused every
// change there, whatever this page shows). Everything from the API is set as text, never
// parsed as HTML, and the content security policy allows no script but this file.
'use strict';

(() => {
  const PORTAL = new URL(document.baseURI).pathname; // "/portal/" (or "/<stage>/portal/")
  const API = PORTAL.replace(/portal\/$/, ''); // where /v1 lives, same origin
  const STORE_KEY = 'webhooks-portal-session';
  const PAGE_SIZE = 20;

  let session = null; // {token, tenant, scopes, expiresAt, readOnly}
  let flash = null; // {text, kind} shown once at the top of the next screen
  let rendering = 0;
  const catalogueCache = { at: 0, types: null };

  // ---------------------------------------------------------------- DOM helpers

  /** An element: h('a', {href: 'x', class: 'y', onclick: fn}, 'text', child, ...). */
  function h(tag, attrs, ...children) {
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

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.firstChild.remove();
    return el;
  }

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  let uid = 0;
  function nextId(prefix) {
    uid += 1;
    return `${prefix}-${uid}`;
  }

  /** A time in the browser's zone, its UTC form on hover. */
  function time(iso) {
    if (!iso) return h('span', { class: 'muted' }, '—');
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return h('span', {}, iso);
    const utc = `${at.toISOString().replace('.000Z', 'Z')} (UTC)`;
    return h('time', { datetime: iso, title: utc }, at.toLocaleString());
  }

  function badge(status) {
    return h('span', { class: `badge badge-${status}` }, status);
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  function table(headings, rows, caption) {
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

  function empty(text, ...more) {
    return h('div', { class: 'empty' }, h('p', {}, text), more);
  }

  function link(path, text, attrs) {
    return h('a', Object.assign({ href: path, 'data-nav': true }, attrs || {}), text);
  }

  /** Whether the session holds a scope. */
  function can(scope) {
    return session.scopes.includes(scope);
  }

  /**
   * A button for a change that needs `attrs.scope` (default webhooks:write; none with
   * `reads`); a session without it gets the button disabled, with the reason on hover.
   */
  function action(label, onclick, attrs) {
    const a = Object.assign({ type: 'button', onclick }, attrs || {});
    const scope = a.reads ? null : a.scope || 'webhooks:write';
    delete a.reads;
    delete a.scope;
    if (scope && !can(scope)) {
      a.disabled = true;
      a.title = session.readOnly ? 'This session is read-only' : `This session lacks ${scope}`;
    }
    return h('button', a, label);
  }

  /** Runs a button's work with the button busy; errors become a message. */
  async function busy(button, work) {
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

  function showError(e) {
    const text = e instanceof ApiError ? e.explain() : `Something went wrong: ${e.message}`;
    setFlash(text, 'error');
    showFlash();
  }

  function setFlash(text, kind) {
    flash = { text, kind: kind || 'ok' };
  }

  function showFlash() {
    const box = $('#flash');
    if (!box || !flash) return;
    clear(box).append(flash.text);
    box.className = `flash flash-${flash.kind}`;
    box.hidden = false;
    flash = null;
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }

    explain() {
      if (this.status === 403 && session && session.readOnly) {
        return `This session is read-only: the server refused the change (${this.message}).`;
      }
      return `${this.message} (${this.code})`;
    }
  }

  async function api(method, path, body) {
    const headers = { authorization: `Bearer ${session.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK', 'The service could not be reached; try again');
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (response.ok) return data;
    if (response.status === 401) {
      gate(Date.now() >= session.expiresAt ? 'expired' : 'invalid');
      throw new ApiError(401, 'UNAUTHORIZED', 'The session has ended');
    }
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || `HTTP_${response.status}`,
      error.message || response.statusText || 'The request failed',
      error.field,
    );
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : '';
  }

  /** The tenant's event types (for pickers), kept for a minute. */
  async function catalogue() {
    if (catalogueCache.types && Date.now() - catalogueCache.at < 60000) return catalogueCache.types;
    const types = [];
    let after = null;
    do {
      const page = await api('GET', `v1/event-types${query({ limit: 100, after })}`);
      types.push(...page.data);
      after = page.pagination.has_next_page ? page.pagination.end_cursor : null;
    } while (after && types.length < 1000);
    catalogueCache.types = types;
    catalogueCache.at = Date.now();
    return types;
  }

  /** Up to 100 of the tenant's webhooks (for pickers). */
  async function someWebhooks() {
    return (await api('GET', 'v1/webhooks?limit=100')).data;
  }

  // ---------------------------------------------------------------- session and gates

  function readSession() {
    const hash = window.location.hash;
    if (hash.startsWith('#session=')) {
      sessionStorage.setItem(STORE_KEY, decodeURIComponent(hash.slice('#session='.length)));
      // The token leaves the address bar (and the history entry) at once.
      history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    return sessionStorage.getItem(STORE_KEY);
  }

  function claimsOf(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return typeof claims.exp === 'number' ? claims : null;
    } catch (e) {
      return null;
    }
  }

  const GATES = {
    missing: [
      'No portal session',
      'Open the portal with the link you were given. Links sign this browser tab in; a new tab needs the link again.',
    ],
    expired: [
      'This link has expired',
      'Portal links last a limited time. Ask for a new link where you got this one.',
    ],
    invalid: [
      'This link is not valid',
      'It may be incomplete, have been changed, or belong to another service. Ask for a new link where you got this one.',
    ],
  };

  /** The clear page for a link that cannot sign in; nothing else stays on screen. */
  function gate(kind) {
    rendering += 1;
    sessionStorage.removeItem(STORE_KEY);
    session = session && Object.assign(session, { token: '' });
    const [title, text] = GATES[kind];
    $('#nav').hidden = true;
    $('#banner').hidden = true;
    clear($('#session'));
    document.title = `${title} · Webhooks portal`;
    const main = clear($('#main'));
    main.append(
      h('section', { class: 'gate', 'data-gate': kind }, h('h1', {}, title), h('p', {}, text)),
    );
    main.focus();
  }

  async function start() {
    const token = readSession();
    if (!token) return gate('missing');
    const claims = claimsOf(token);
    if (!claims) return gate('invalid');
    // The server decides whether the link is good (this browser's clock may be off); the
    // clock only words the page when it is not.
    session = { token, expiresAt: claims.exp * 1000, readOnly: true, scopes: [] };
    let me;
    try {
      me = await api('GET', 'v1/me');
    } catch (e) {
      if (e.status !== 401) showStartError(e);
      return undefined;
    }
    session.tenant = me.tenant_id;
    session.scopes = me.scopes;
    session.readOnly = !me.scopes.includes('webhooks:write');
    // The page closes itself when the session ends (a day at most: within a timer's range).
    setTimeout(() => gate('expired'), Math.max(0, session.expiresAt - Date.now()));
    const until = new Date(session.expiresAt);
    append(clear($('#session')), [
      h('span', {}, 'Tenant '),
      h('strong', { id: 'tenant' }, me.tenant_id),
      session.readOnly ? h('span', { class: 'badge badge-readonly' }, 'read-only') : null,
      h('span', { class: 'muted' }, ' · until '),
      time(until.toISOString()),
    ]);
    if (session.readOnly) {
      const banner = $('#banner');
      clear(banner).append('Read-only session: you can see everything here and change nothing.');
      banner.hidden = false;
    }
    $('#nav').hidden = false;
    // Another link opened in this tab: start again with it.
    window.addEventListener('hashchange', () => {
      if (window.location.hash.startsWith('#session=')) window.location.reload();
    });
    document.addEventListener('click', onLinkClick);
    window.addEventListener('popstate', () => render(true));
    return render(false);
  }

  function showStartError(e) {
    const main = clear($('#main'));
    main.append(
      h(
        'section',
        { class: 'gate', 'data-gate': 'unavailable' },
        h('h1', {}, 'The portal cannot load right now'),
        h('p', {}, e.explain ? e.explain() : String(e)),
        h('p', {}, 'Reload the page in a moment.'),
      ),
    );
  }

  // ---------------------------------------------------------------- routing

  const SCREENS = [
    [/^(?:webhooks)?$/, webhooksScreen],
    [/^webhooks\/new$/, newWebhookScreen],
    [/^webhooks\/(wh_[0-9A-Za-z]+)$/, webhookScreen],
    [/^deliveries$/, deliveriesScreen],
    [/^deliveries\/(dlv_[0-9A-Za-z]+)$/, deliveryScreen],
    [/^events$/, eventsScreen],
    [/^events\/(evt_[0-9A-Za-z]+)$/, eventScreen],
    [/^event-types$/, eventTypesScreen],
  ];

  function here() {
    const path = window.location.pathname;
    const rest = path.startsWith(PORTAL) ? path.slice(PORTAL.length) : '';
    return rest.replace(/\/+$/, '');
  }

  function go(path) {
    history.pushState(null, '', PORTAL + path);
    return render(true);
  }

  function onLinkClick(e) {
    if (e.target.closest && e.target.closest('a.skip')) {
      // The page's <base> would make "#main" another address: move the focus instead.
      e.preventDefault();
      $('#main').focus();
      return;
    }
    const a = e.target.closest && e.target.closest('a[data-nav]');
    if (!a || e.defaultPrevented || e.button !== 0) return;
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    history.pushState(null, '', a.href);
    render(true);
  }

  /** Draws the screen for the current address; `moved` puts focus at its top. */
  async function render(moved) {
    if (!session || !session.token) return;
    rendering += 1;
    const mine = rendering;
    const path = here();
    const params = new URLSearchParams(window.location.search);
    for (const a of document.querySelectorAll('#nav a')) {
      const section = a.getAttribute('href');
      const current = path === section || path.startsWith(`${section}/`) || (!path && section === 'webhooks');
      if (current) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const found = SCREENS.map(([re, screen]) => [path.match(re), screen]).find(([m]) => m);
    let content;
    try {
      content = found
        ? await found[1](found[0].slice(1), params)
        : [h('h1', {}, 'Not found'), empty('There is nothing at this address.', link('webhooks', 'See the webhooks'))];
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      content = [h('h1', {}, 'Could not load this page'), empty(e instanceof ApiError ? e.explain() : String(e))];
    }
    if (mine !== rendering) return; // a later navigation won
    const main = clear($('#main'));
    main.append(h('div', { id: 'flash', class: 'flash', role: 'status', hidden: true }));
    append(main, [content]);
    const title = $('h1', main);
    document.title = `${title ? title.textContent : 'Portal'} · Webhooks portal`;
    showFlash();
    if (moved) main.focus();
  }

  /** This screen's address with the query `q`. */
  function address(q) {
    const text = q.toString();
    return `${here()}${text ? `?${text}` : ''}`;
  }

  /** The screen's query without its page cursors. */
  function withoutCursors(params) {
    const q = new URLSearchParams(params);
    q.delete('after');
    q.delete('before');
    return q;
  }

  function pager(pagination, params) {
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
  function firstPage(params) {
    if (!params.get('after') && !params.get('before')) return null;
    return link(address(withoutCursors(params)), 'Back to the newest');
  }

  function pageParams(params) {
    return { limit: PAGE_SIZE, after: params.get('after'), before: params.get('before') };
  }

  /** A filter bar: selects that navigate on change, keeping the other filters. */
  function filters(label, fields, params) {
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

  const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'buffered', 'cancelled'];

  // ---------------------------------------------------------------- webhooks

  async function webhooksScreen(_, params) {
    const status = params.get('status');
    const page = await api('GET', `v1/webhooks${query(Object.assign(pageParams(params), { status }))}`);
    const header = h(
      'div',
      { class: 'title-row' },
      h('h1', {}, 'Webhooks'),
      session.readOnly ? null : link('webhooks/new', 'New webhook', { class: 'button primary', 'data-action': 'new-webhook' }),
    );
    const bar = filters(
      'Filter webhooks',
      [{ name: 'status', label: 'Status', any: 'Any status', options: ['active', 'paused', 'disabled'].map((s) => [s, s]) }],
      params,
    );
    if (!page.data.length) {
      return [
        header,
        bar,
        firstPage(params)
          ? empty('Nothing on this page.', firstPage(params))
          : empty(
              status ? `No ${status} webhooks.` : 'No webhooks yet.',
              session.readOnly || status ? null : link('webhooks/new', 'Create the first one', { class: 'button' }),
            ),
      ];
    }
    const cells = [];
    const rows = page.data.map((wh) => {
      const rate = h('td', { class: 'rate', 'data-webhook': wh.id }, h('span', { class: 'muted' }, '…'));
      cells.push([wh.id, rate]);
      return h(
        'tr',
        {},
        h('td', {}, link(`webhooks/${wh.id}`, wh.name || wh.url, { class: 'strong' }), wh.name ? h('div', { class: 'muted url' }, wh.url) : null),
        h('td', {}, badge(wh.status)),
        h('td', {}, wh.events.join(', ')),
        h('td', {}, time(wh.last_triggered_at)),
        rate,
      );
    });
    successRates(cells);
    return [
      header,
      bar,
      table(['Webhook', 'Status', 'Event types', 'Last triggered', 'Recent success'], rows, 'Webhooks'),
      pager(page.pagination, params),
    ];
  }

  /**
   * Each webhook's success among the tenant's latest 100 deliveries: one request for the
   * whole page (a request per webhook would read the delivery log once per row).
   */
  async function successRates(cells) {
    const mark = (cell, text, title) => clear(cell).append(h('span', { class: title ? '' : 'muted', title }, text));
    try {
      const recent = await api('GET', 'v1/deliveries?limit=100');
      for (const [webhookId, cell] of cells) {
        const done = recent.data.filter((d) => d.webhook_id === webhookId && (d.status === 'succeeded' || d.status === 'failed'));
        const ok = done.filter((d) => d.status === 'succeeded').length;
        if (done.length) {
          mark(cell, `${Math.round((100 * ok) / done.length)}%`, `${ok} of its ${done.length} finished deliveries among the tenant's latest 100 succeeded`);
        } else {
          mark(cell, '—', null);
          cell.firstChild.title = 'No finished delivery among the tenant’s latest 100';
        }
      }
    } catch (e) {
      for (const [, cell] of cells) mark(cell, '—', null);
    }
  }

  // A form field: label, control, hint and the API's message for it.
  function field(form, spec) {
    const id = nextId(`f-${spec.name}`);
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const attrs = {
      id,
      name: spec.name,
      'aria-describedby': `${spec.hint ? hintId : ''} ${errorId}`.trim(),
      required: spec.required,
      placeholder: spec.placeholder,
      'data-field': spec.name,
    };
    let control;
    if (spec.type === 'textarea') {
      control = h('textarea', Object.assign(attrs, { rows: spec.rows || 4, spellcheck: 'false' }));
      control.value = spec.value || '';
    } else if (spec.type === 'select') {
      control = h('select', attrs, spec.options.map(([v, t]) => h('option', { value: v, selected: spec.value === v }, t)));
    } else {
      control = h('input', Object.assign(attrs, { type: spec.type || 'text', value: spec.value, min: spec.min, max: spec.max, autocomplete: 'off' }));
    }
    const wrap = h(
      'div',
      { class: 'field' },
      h('label', { for: id }, spec.label, spec.required ? h('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null),
      control,
      spec.hint ? h('p', { class: 'hint', id: hintId }, spec.hint) : null,
      h('p', { class: 'field-error', id: errorId, hidden: true }),
    );
    form.fields = form.fields || {};
    form.fields[spec.name] = control;
    return wrap;
  }

  function clearErrors(form) {
    for (const el of form.querySelectorAll('.field-error')) {
      el.hidden = true;
      clear(el);
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const top = $('.form-error', form);
    if (top) {
      top.hidden = true;
      clear(top);
    }
  }

  /** The API's message next to the field it names (its first part), else atop the form. */
  function fieldError(form, name, message) {
    const key = name ? String(name).split(/[.[]/)[0] : null;
    const control = key && form.fields && form.fields[key];
    if (control) {
      const box = document.getElementById(`${control.id}-error`);
      clear(box).append(message);
      box.hidden = false;
      control.setAttribute('aria-invalid', 'true');
      control.focus();
      return;
    }
    const top = $('.form-error', form);
    clear(top).append(message);
    top.hidden = false;
    top.focus();
  }

  /** Which field an API error is about: its `field`, else what its code implies. */
  function errorField(e) {
    if (e.field) return e.field;
    const byCode = {
      INVALID_URL: 'url',
      INVALID_URL_IS_NOT_USING_HTTPS: 'url',
      DUPLICATE_URL: 'url',
      TLS_VALIDATION_FAILED: 'url',
      INVALID_SUBSCRIPTION: 'events',
      INVALID_HEADERS: 'headers',
      INVALID_FILTER: 'filter',
      INVALID_SECRET: 'secret',
    };
    return byCode[e.code] || null;
  }

  function readJson(form, name, fallback) {
    const text = form.fields[name].value.trim();
    if (!text) return fallback;
    try {
      return JSON.parse(text);
    } catch (e) {
      throw Object.assign(new Error(`${name}: not valid JSON (${e.message})`), { field: name });
    }
  }

  function readEvents(form) {
    return form.fields.events.value
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
  }

  function readRateLimit(form) {
    if (form.fields.rate_limit.validity.badInput) {
      // The browser could not read it as a number (and would report it as empty).
      throw Object.assign(new Error('rate_limit must be a whole number from 1 to 10000, or empty for no limit'), { field: 'rate_limit' });
    }
    const text = form.fields.rate_limit.value.trim();
    if (!text) return null;
    const n = Number(text);
    return Number.isInteger(n) ? n : text;
  }

  /** The fields the create and edit forms share. */
  function webhookFields(form, wh, types) {
    const names = types.map((t) => t.name);
    return [
      field(form, { name: 'name', label: 'Name', value: wh.name || '' }),
      field(form, { name: 'url', label: 'Endpoint URL', type: 'url', required: true, value: wh.url || '', placeholder: 'https://example.com/webhooks' }),
      field(form, {
        name: 'events',
        label: 'Event types',
        required: true,
        value: (wh.events || []).join(', '),
        placeholder: names[0] || 'user.created',
        hint: `Separated by commas; * for every type, prefix.* for a family. Known types: ${names.length ? names.join(', ') : 'none yet'}.`,
      }),
      field(form, { name: 'description', label: 'Description', type: 'textarea', rows: 2, value: wh.description || '' }),
      field(form, {
        name: 'headers',
        label: 'Extra headers',
        type: 'textarea',
        rows: 3,
        value: wh.headers && Object.keys(wh.headers).length ? json(wh.headers) : '',
        placeholder: '{"X-Team": "billing"}',
        hint: 'A JSON object of header names to values, sent with every delivery.',
      }),
      field(form, {
        name: 'rate_limit',
        label: 'Rate limit (attempts per second)',
        type: 'number',
        min: 1,
        max: 10000,
        value: wh.rate_limit === null || wh.rate_limit === undefined ? '' : String(wh.rate_limit),
        hint: 'Empty for no limit. Deliveries over the rate wait; they never fail because of it.',
      }),
      field(form, {
        name: 'filter',
        label: 'Filter',
        type: 'textarea',
        rows: 3,
        value: wh.filter ? json(wh.filter) : '',
        placeholder: '{"data": {"amount": {"$gte": 100}}}',
        hint: 'A JSON object the payload must match ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $startsWith, $and, $or, $not). Empty for none.',
      }),
      field(form, {
        name: 'metadata',
        label: 'Metadata',
        type: 'textarea',
        rows: 2,
        value: wh.metadata && Object.keys(wh.metadata).length ? json(wh.metadata) : '',
        placeholder: '{"team": "crm"}',
        hint: 'A JSON object for your own use.',
      }),
    ];
  }

  /** A form for a change that needs `scope`; disabled for a session without it. */
  function formShell(label, onsubmit, scope) {
    const form = h('form', { class: 'card form', 'aria-label': label, novalidate: true });
    const fieldset = h('fieldset', { disabled: !can(scope || 'webhooks:write') }, h('p', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true }));
    form.append(fieldset);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const button = $('button[type=submit]', form);
      await busy(button, async () => {
        try {
          await onsubmit(form);
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) return;
          if (err instanceof ApiError || err.field) {
            fieldError(form, err instanceof ApiError ? errorField(err) : err.field, err instanceof ApiError ? err.explain() : err.message);
          } else {
            throw err;
          }
        }
      });
    });
    return { form, fieldset };
  }

  async function newWebhookScreen() {
    const types = await catalogue();
    const { form, fieldset } = formShell('New webhook', async (f) => {
      const body = {
        url: f.fields.url.value.trim(),
        events: readEvents(f),
        name: f.fields.name.value.trim() || undefined,
        description: f.fields.description.value.trim() || undefined,
        headers: readJson(f, 'headers', undefined),
        rate_limit: readRateLimit(f) === null ? undefined : readRateLimit(f),
        filter: readJson(f, 'filter', undefined),
        metadata: readJson(f, 'metadata', undefined),
        status: f.fields.status.value,
      };
      const username = f.fields.username.value.trim();
      const password = f.fields.password.value;
      if (username || password) body.auth = { username, password };
      const created = await api('POST', 'v1/webhooks', body);
      setFlash(`Webhook created. Its signing secret ends in ${created.secret_last_4}; reveal it below to verify signatures.`);
      await go(`webhooks/${created.id}`);
    });
    append(fieldset, [
      webhookFields(form, { events: [] }, types),
      field(form, { name: 'status', label: 'Start', type: 'select', value: 'active', options: [['active', 'Active: deliver at once'], ['paused', 'Paused: keep deliveries until unpaused']] }),
      h(
        'div',
        { class: 'pair' },
        field(form, { name: 'username', label: 'Basic auth username', hint: 'Optional: deliveries carry HTTP Basic credentials.' }),
        field(form, { name: 'password', label: 'Basic auth password', type: 'password' }),
      ),
      h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-action': 'create-webhook' }, 'Create webhook'), link('webhooks', 'Cancel', { class: 'button' })),
    ]);
    return [h('p', { class: 'crumbs' }, link('webhooks', 'Webhooks'), ' / new'), h('h1', {}, 'New webhook'), form];
  }

  async function webhookScreen([id]) {
    const [wh, types] = await Promise.all([api('GET', `v1/webhooks/${id}`), catalogue()]);
    const title = wh.name || wh.url;
    const facts = h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Status'),
      h('dd', { id: 'webhook-status' }, badge(wh.status), wh.disabled_reason ? h('span', { class: 'muted' }, ` ${wh.disabled_reason}`) : null),
      h('dt', {}, 'URL'),
      h('dd', { class: 'url' }, wh.url),
      h('dt', {}, 'Event types'),
      h('dd', {}, wh.events.join(', ')),
      h('dt', {}, 'Last triggered'),
      h('dd', {}, time(wh.last_triggered_at)),
      h('dt', {}, 'Created'),
      h('dd', {}, time(wh.created_at)),
      h('dt', {}, 'Updated'),
      h('dd', {}, time(wh.updated_at)),
      h('dt', {}, 'ID'),
      h('dd', {}, h('code', {}, wh.id)),
    );
    const controls = h('div', { class: 'buttons' });
    if (wh.status === 'active') {
      controls.append(action('Pause', (e) => statusChange(e.target, `v1/webhooks/${id}/pause`, 'Paused: deliveries wait until you unpause.'), { 'data-action': 'pause' }));
    } else if (wh.status === 'paused') {
      controls.append(
        action('Unpause', async (e) => {
          await busy(e.target, async () => {
            const out = await api('POST', `v1/webhooks/${id}/unpause`);
            setFlash(`Unpaused: ${out.released} buffered ${out.released === 1 ? 'delivery' : 'deliveries'} on the way, oldest first.`);
            await render(false);
          });
        }, { 'data-action': 'unpause' }),
      );
    } else {
      controls.append(
        action('Enable', async (e) => {
          await busy(e.target, async () => {
            await api('PATCH', `v1/webhooks/${id}`, { status: 'active' });
            setFlash('Enabled: deliveries start again with new events.');
            await render(false);
          });
        }, { 'data-action': 'enable' }),
      );
    }
    controls.append(link(`deliveries?webhook_id=${encodeURIComponent(id)}`, 'Deliveries', { class: 'button' }));
    return [
      h('p', { class: 'crumbs' }, link('webhooks', 'Webhooks'), ' / ', h('span', {}, wh.id)),
      h('h1', { class: 'wrap' }, title),
      h('section', { class: 'card', 'aria-label': 'Summary' }, facts, controls),
      testSection(wh, types),
      secretSection(wh),
      editSection(wh, types),
      authSection(wh),
      recoverSection(wh.id),
      deleteSection(wh),
    ];
  }

  async function statusChange(button, path, message) {
    await busy(button, async () => {
      await api('POST', path);
      setFlash(message);
      await render(false);
    });
  }

  function testSection(wh, types) {
    const out = h('div', { class: 'test-result', id: 'test-result', 'aria-live': 'polite' });
    const typeId = nextId('test-type');
    const dataId = nextId('test-data');
    // The types this webhook receives first.
    const receives = (name) => wh.events.some((e) => e === '*' || e === name || (e.endsWith('.*') && name.startsWith(e.slice(0, -1))));
    const subscribed = types.map((t) => t.name).sort((a, b) => receives(b) - receives(a));
    const select = h('select', { id: typeId, disabled: session.readOnly }, subscribed.map((n) => h('option', { value: n }, n)));
    const data = h('textarea', { id: dataId, rows: 2, spellcheck: 'false', placeholder: '{"example": true}', disabled: session.readOnly });
    const send = action('Send test', async (e) => {
      await busy(e.target, async () => {
        let body = { event: select.value };
        if (data.value.trim()) {
          try {
            body.data = JSON.parse(data.value);
          } catch (err) {
            throw new Error(`data is not valid JSON (${err.message})`);
          }
        }
        const r = await api('POST', `v1/webhooks/${wh.id}/test`, body);
        const d = r.details || {};
        append(clear(out), [
          h('p', { class: r.success ? 'ok' : 'bad', 'data-success': String(r.success) }, r.success ? '✓ ' : '✗ ', r.message),
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Status code'),
            h('dd', {}, d.status_code ?? '—'),
            h('dt', {}, 'Response time'),
            h('dd', {}, d.response_time === undefined || d.response_time === null ? '—' : `${d.response_time} ms`),
            h('dt', {}, 'Sent'),
            h('dd', {}, time(d.timestamp)),
            d.error ? [h('dt', {}, 'Error'), h('dd', {}, d.error)] : null,
          ),
        ]);
      });
    }, { 'data-action': 'send-test' });
    if (!subscribed.length) {
      return h('section', { class: 'card', 'aria-labelledby': 'test-h' }, h('h2', { id: 'test-h' }, 'Send a test'), empty('There are no event types to test with yet.'));
    }
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'test-h' },
      h('h2', { id: 'test-h' }, 'Send a test'),
      h('p', { class: 'muted' }, 'One signed delivery now, with the result below. It is not recorded as a delivery.'),
      h('div', { class: 'field' }, h('label', { for: typeId }, 'Event type'), select),
      h('div', { class: 'field' }, h('label', { for: dataId }, 'Data (JSON object, optional)'), data),
      h('div', { class: 'buttons' }, send),
      out,
    );
  }

  function secretSection(wh) {
    const shown = h('code', { id: 'secret-value', class: 'secret' }, `whsec_…${wh.secret_last_4 || ''}`);
    const note = h('p', { class: 'muted', id: 'secret-note', 'aria-live': 'polite' });
    const reveal = action('Reveal', async (e) => {
      await busy(e.target, async () => {
        const r = await api('GET', `v1/webhooks/${wh.id}/secret`);
        clear(shown).append(r.secret);
        clear(note).append('Keep it secret: it proves deliveries come from us.');
      });
    }, { 'data-action': 'reveal-secret' });
    const rotate = action('Rotate', async (e) => {
      await busy(e.target, async () => {
        const r = await api('POST', `v1/webhooks/${wh.id}/secret/rotate`, {});
        clear(shown).append(r.secret);
        append(clear(note), ['Rotated. The previous secret keeps signing beside this one until ', time(r.previous_expires_at), '.']);
      });
    }, { 'data-action': 'rotate-secret' });
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'secret-h' },
      h('h2', { id: 'secret-h' }, 'Signing secret'),
      h('p', {}, shown),
      note,
      h('div', { class: 'buttons' }, reveal, rotate),
    );
  }

  function editSection(wh, types) {
    const { form, fieldset } = formShell('Edit webhook', async (f) => {
      const next = {
        name: f.fields.name.value.trim() || null,
        url: f.fields.url.value.trim(),
        events: readEvents(f),
        description: f.fields.description.value.trim() || null,
        headers: readJson(f, 'headers', {}),
        rate_limit: readRateLimit(f),
        filter: readJson(f, 'filter', null),
        metadata: readJson(f, 'metadata', {}),
      };
      const before = {
        name: wh.name || null,
        url: wh.url,
        events: wh.events,
        description: wh.description || null,
        headers: wh.headers || {},
        rate_limit: wh.rate_limit ?? null,
        filter: wh.filter ?? null,
        metadata: wh.metadata || {},
      };
      // Only what changed: a masked value shown here is never sent back.
      const body = {};
      for (const k of Object.keys(next)) if (JSON.stringify(next[k]) !== JSON.stringify(before[k])) body[k] = next[k];
      if (!Object.keys(body).length) {
        setFlash('Nothing changed.');
        showFlash();
        return;
      }
      await api('PATCH', `v1/webhooks/${wh.id}`, body);
      setFlash('Saved.');
      await render(false);
    });
    append(fieldset, [webhookFields(form, wh, types), h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', 'data-action': 'save-webhook' }, 'Save changes'))]);
    return h('section', { 'aria-labelledby': 'edit-h' }, h('h2', { id: 'edit-h' }, 'Settings'), form);
  }

  function authSection(wh) {
    const { form, fieldset } = formShell('Basic authentication', async (f) => {
      await api('PUT', `v1/webhooks/${wh.id}/auth`, { username: f.fields.username.value, password: f.fields.password.value });
      setFlash('Basic authentication saved: deliveries carry it from now on.');
      await render(false);
    });
    const remove = wh.auth
      ? action('Remove', async (e) => {
          await busy(e.target, async () => {
            await api('DELETE', `v1/webhooks/${wh.id}/auth`);
            setFlash('Basic authentication removed.');
            await render(false);
          });
        }, { 'data-action': 'remove-auth' })
      : null;
    append(fieldset, [
      h('p', { class: 'muted' }, wh.auth ? `Deliveries carry HTTP Basic credentials for “${wh.auth.username}”. Enter new ones to replace them.` : 'Deliveries carry no HTTP Basic credentials.'),
      h(
        'div',
        { class: 'pair' },
        field(form, { name: 'username', label: 'Username', required: true, value: wh.auth ? wh.auth.username : '' }),
        field(form, { name: 'password', label: 'Password', type: 'password', required: true }),
      ),
      h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-action': 'save-auth' }, 'Save credentials'), remove),
    ]);
    return h('section', { 'aria-labelledby': 'auth-h' }, h('h2', { id: 'auth-h' }, 'Basic authentication'), form);
  }

  /** Local datetime-local text, `hours` ago. */
  function localInput(hoursAgo) {
    const at = new Date(Date.now() - hoursAgo * 3600000);
    at.setMinutes(at.getMinutes() - at.getTimezoneOffset());
    return at.toISOString().slice(0, 16);
  }

  function recoverSection(webhookId) {
    const { form, fieldset } = formShell('Recover failed deliveries', async (f) => {
      const since = new Date(f.fields.since.value);
      if (Number.isNaN(since.getTime())) throw Object.assign(new Error('Pick a date and time'), { field: 'since' });
      await api('POST', `v1/webhooks/${webhookId}/recover`, { since: since.toISOString() });
      setFlash(`Recovering failed deliveries since ${since.toLocaleString()}: they are sent again, oldest first.`);
      await render(false);
    }, 'events:write');
    append(fieldset, [
      h('p', { class: 'muted' }, 'Send again every failed delivery of this webhook created since a time (your local time).'),
      field(form, { name: 'since', label: 'Failed since', type: 'datetime-local', required: true, value: localInput(24) }),
      h('div', { class: 'buttons' }, h('button', { type: 'submit', 'data-action': 'recover' }, 'Recover failed deliveries')),
    ]);
    return h('section', { 'aria-labelledby': 'recover-h' }, h('h2', { id: 'recover-h' }, 'Recover failed deliveries'), form);
  }

  function deleteSection(wh) {
    const confirmBox = h('div', { class: 'confirm', hidden: true, role: 'alertdialog', 'aria-labelledby': 'delete-q' });
    const start = action('Delete webhook', () => {
      confirmBox.hidden = false;
      $('button', confirmBox).focus();
    }, { class: 'danger', 'data-action': 'delete' });
    append(confirmBox, [
      h('p', { id: 'delete-q' }, `Delete “${wh.name || wh.url}”? Its pending and buffered deliveries are cancelled. This cannot be undone.`),
      h(
        'div',
        { class: 'buttons' },
        action('Delete for good', async (e) => {
          await busy(e.target, async () => {
            await api('DELETE', `v1/webhooks/${wh.id}`);
            setFlash('Webhook deleted.');
            await go('webhooks');
          });
        }, { class: 'danger', 'data-action': 'confirm-delete' }),
        action('Cancel', () => {
          confirmBox.hidden = true;
          start.focus();
        }, { reads: true }),
      ),
    ]);
    return h('section', { class: 'card danger-zone', 'aria-labelledby': 'delete-h' }, h('h2', { id: 'delete-h' }, 'Delete'), start, confirmBox);
  }

  // ---------------------------------------------------------------- deliveries

  function deliveryRows(deliveries, names) {
    return deliveries.map((d) =>
      h(
        'tr',
        { 'data-delivery': d.id },
        h('td', {}, link(`deliveries/${d.id}`, d.id, { class: 'mono' })),
        h('td', {}, d.event_type),
        h('td', {}, link(`webhooks/${d.webhook_id}`, names.get(d.webhook_id) || d.webhook_id)),
        h('td', {}, badge(d.status)),
        h('td', { class: 'num' }, d.attempts),
        h('td', {}, d.last_attempt ? (d.last_attempt.status_code ?? d.last_attempt.error ?? '—') : h('span', { class: 'muted' }, 'none yet')),
        h('td', {}, time(d.created_at)),
      ),
    );
  }

  const DELIVERY_HEADINGS = ['Delivery', 'Event type', 'Webhook', 'Status', 'Attempts', 'Last result', 'Created'];

  async function deliveriesScreen(_, params) {
    const webhookId = params.get('webhook_id');
    const [page, webhooks, types] = await Promise.all([
      api('GET', `v1/deliveries${query(Object.assign(pageParams(params), { status: params.get('status'), webhook_id: webhookId, event_type: params.get('event_type') }))}`),
      someWebhooks(),
      catalogue(),
    ]);
    const names = new Map(webhooks.map((w) => [w.id, w.name || w.url]));
    const bar = filters(
      'Filter deliveries',
      [
        { name: 'status', label: 'Status', any: 'Any status', options: DELIVERY_STATUSES.map((s) => [s, s]) },
        { name: 'webhook_id', label: 'Webhook', any: 'Any webhook', options: webhooks.map((w) => [w.id, w.name || w.url]) },
        { name: 'event_type', label: 'Event type', any: 'Any type', options: types.map((t) => [t.name, t.name]) },
      ],
      params,
    );
    const filtered = params.get('status') || webhookId || params.get('event_type');
    const list = page.data.length
      ? [table(DELIVERY_HEADINGS, deliveryRows(page.data, names), 'Deliveries'), pager(page.pagination, params)]
      : firstPage(params)
        ? empty('Nothing on this page.', firstPage(params))
        : empty(
            filtered ? 'No deliveries match these filters.' : 'No deliveries yet: send a test from a webhook’s page, or publish an event.',
            filtered ? null : link('webhooks', 'Go to the webhooks'),
          );
    return [h('h1', {}, 'Deliveries'), bar, list, webhookId && names.has(webhookId) ? recoverSection(webhookId) : null];
  }

  async function deliveryScreen([id]) {
    const d = await api('GET', `v1/deliveries/${id}`);
    const retry = action('Retry now', async (e) => {
      await busy(e.target, async () => {
        await api('POST', `v1/deliveries/${id}/retry`);
        setFlash('Sent again: the new attempt appears below once it is made.');
        await render(false);
      });
    }, { class: 'primary', scope: 'events:write', 'data-action': 'retry' });
    const attempts = (d.attempt_log || [])
      .slice()
      .reverse()
      .map((a, i, all) =>
        h(
          'tr',
          { 'data-attempt': all.length - i },
          h('td', { class: 'num' }, all.length - i),
          h('td', {}, time(a.at)),
          h('td', { class: 'num' }, a.status_code ?? '—'),
          h('td', { class: 'num' }, `${a.response_time} ms`),
          h('td', {}, a.error || h('span', { class: 'muted' }, '—')),
          h('td', {}, a.response_excerpt ? h('pre', { class: 'excerpt' }, a.response_excerpt) : h('span', { class: 'muted' }, '—')),
        ),
      );
    return [
      h('p', { class: 'crumbs' }, link('deliveries', 'Deliveries'), ' / ', h('span', {}, d.id)),
      h('h1', { class: 'wrap' }, `Delivery of ${d.event_type}`),
      h(
        'section',
        { class: 'card', 'aria-label': 'Summary' },
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'Status'),
          h('dd', { id: 'delivery-status' }, badge(d.status)),
          h('dt', {}, 'Attempts'),
          h('dd', { id: 'delivery-attempts' }, d.attempts),
          h('dt', {}, 'Webhook'),
          h('dd', {}, link(`webhooks/${d.webhook_id}`, d.webhook_id, { class: 'mono' })),
          h('dt', {}, 'Event'),
          h('dd', {}, link(`events/${d.event_id}`, d.event_id, { class: 'mono' })),
          h('dt', {}, 'Created'),
          h('dd', {}, time(d.created_at)),
          h('dt', {}, 'Next attempt'),
          h('dd', {}, time(d.next_attempt_at)),
        ),
        h('div', { class: 'buttons' }, retry, action('Refresh', () => render(false), { reads: true, 'data-action': 'refresh' })),
      ),
      h('h2', {}, 'Attempts'),
      attempts.length
        ? table(['#', 'At', 'Status code', 'Response time', 'Error', 'Response excerpt'], attempts, 'Attempts')
        : empty('No attempt yet: the first one is on its way.'),
    ];
  }

  // ---------------------------------------------------------------- events

  async function eventsScreen(_, params) {
    const [page, types] = await Promise.all([
      api('GET', `v1/events${query(Object.assign(pageParams(params), { type: params.get('type') }))}`),
      catalogue(),
    ]);
    const bar = filters('Filter events', [{ name: 'type', label: 'Event type', any: 'Any type', options: types.map((t) => [t.name, t.name]) }], params);
    const rows = page.data.map((e) =>
      h('tr', {}, h('td', {}, link(`events/${e.id}`, e.id, { class: 'mono' })), h('td', {}, e.type), h('td', {}, time(e.created_at))),
    );
    return [
      h('h1', {}, 'Events'),
      bar,
      rows.length
        ? [table(['Event', 'Type', 'Created'], rows, 'Events'), pager(page.pagination, params)]
        : empty(params.get('type') ? 'No events of this type.' : 'No events yet: your platform publishes them through the API.', firstPage(params)),
    ];
  }

  async function eventScreen([id], params) {
    const [event, deliveries, webhooks] = await Promise.all([
      api('GET', `v1/events/${id}`),
      api('GET', `v1/deliveries${query(Object.assign(pageParams(params), { event_id: id }))}`),
      someWebhooks(),
    ]);
    const names = new Map(webhooks.map((w) => [w.id, w.name || w.url]));
    const selectId = nextId('replay-to');
    const target = h(
      'select',
      { id: selectId, disabled: !can('events:write') },
      h('option', { value: '' }, 'Every active webhook that would receive it and has not'),
      webhooks.filter((w) => w.status === 'active').map((w) => h('option', { value: w.id }, w.name || w.url)),
    );
    const replay = action('Replay', async (e) => {
      await busy(e.target, async () => {
        const body = target.value ? { webhook_id: target.value } : {};
        const r = await api('POST', `v1/events/${id}/replay`, body);
        setFlash(r.queued ? `Replayed: ${r.queued} new ${r.queued === 1 ? 'delivery' : 'deliveries'} queued.` : 'Nothing to replay: every matching webhook already has a delivery of this event.');
        await render(false);
      });
    }, { class: 'primary', scope: 'events:write', 'data-action': 'replay' });
    const summary = event.deliveries || {};
    return [
      h('p', { class: 'crumbs' }, link('events', 'Events'), ' / ', h('span', {}, event.id)),
      h('h1', { class: 'wrap' }, event.type),
      h(
        'section',
        { class: 'card', 'aria-label': 'Summary' },
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'ID'),
          h('dd', {}, h('code', {}, event.id)),
          h('dt', {}, 'Created'),
          h('dd', {}, time(event.created_at)),
          event.source_id ? [h('dt', {}, 'Source id'), h('dd', {}, h('code', {}, event.source_id))] : null,
          h('dt', {}, 'Deliveries'),
          h('dd', {}, `${summary.total || 0} (${DELIVERY_STATUSES.filter((s) => summary[s]).map((s) => `${summary[s]} ${s}`).join(', ') || 'none'})`),
        ),
        h('h2', {}, 'Data'),
        h('pre', { class: 'json' }, json(event.data)),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'replay-h' },
        h('h2', { id: 'replay-h' }, 'Replay'),
        h('div', { class: 'field' }, h('label', { for: selectId }, 'Send it again to'), target),
        h('div', { class: 'buttons' }, replay),
      ),
      h('h2', {}, 'Deliveries'),
      deliveries.data.length
        ? [table(DELIVERY_HEADINGS, deliveryRows(deliveries.data, names), 'Deliveries of this event'), pager(deliveries.pagination, params)]
        : empty('No deliveries of this event: no webhook matched it. Replay it to one.', firstPage(params)),
    ];
  }

  async function eventTypesScreen(_, params) {
    const page = await api('GET', `v1/event-types${query(pageParams(params))}`);
    const rows = page.data.map((t) =>
      h(
        'tr',
        {},
        h('td', {}, h('code', {}, t.name)),
        h('td', {}, t.description || h('span', { class: 'muted' }, '—')),
        h('td', {}, t.schema ? h('details', {}, h('summary', {}, 'Schema'), h('pre', { class: 'json' }, json(t.schema))) : h('span', { class: 'muted' }, 'none')),
        h('td', {}, time(t.created_at)),
      ),
    );
    return [
      h('h1', {}, 'Event types'),
      h('p', { class: 'muted' }, 'The events your platform publishes. A webhook subscribes to some of them; a schema, when set, is checked on every event of its type.'),
      rows.length
        ? [table(['Name', 'Description', 'Schema', 'Created'], rows, 'Event types'), pager(page.pagination, params)]
        : empty('No event types yet: your platform creates them through the API.', firstPage(params)),
    ];
  }

  document.addEventListener('DOMContentLoaded', () => {
    start().catch((e) => showStartError(e));
  });
})();
