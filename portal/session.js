// The session: its token, moved from the link's fragment into this tab's sessionStorage;
// the pages shown when a link cannot sign in; what the session's scopes allow.

import { $, clear, h } from './dom.js';

const STORE_KEY = 'webhooks-portal-session';

/** The signed-in session: {token, tenant, scopes, expiresAt, readOnly}. */
export const session = { token: '', tenant: null, scopes: [], expiresAt: 0, readOnly: true };

/** Screens drawn so far: a screen that finishes after a later one started is dropped. */
export const drawing = { count: 0 };

export function readSession() {
  const hash = window.location.hash;
  if (hash.startsWith('#session=')) {
    sessionStorage.setItem(STORE_KEY, decodeURIComponent(hash.slice('#session='.length)));
    // The token leaves the address bar (and the history entry) at once.
    history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(STORE_KEY);
}

export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims.exp === 'number' ? claims : null;
  } catch (e) {
    return null;
  }
}

export const GATES = {
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
export function gate(kind) {
  drawing.count += 1;
  sessionStorage.removeItem(STORE_KEY);
  session.token = '';
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

/** Whether the session holds a scope. */
export function can(scope) {
  return session.scopes.includes(scope);
}

/**
 * A button for a change that needs `attrs.scope` (default webhooks:write; none with
 * `reads`); a session without it gets the button disabled, with the reason on hover.
 */
export function action(label, onclick, attrs) {
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
