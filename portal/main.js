// The tenant portal (SPEC §10): a plain client of the webhooks API, in the browser.
//
// The session link carries its token in the address's fragment (#session=...), which no
// browser sends to a server. The script moves it to this tab's sessionStorage and out of
// the address bar at once, then calls the API on this origin with it as a bearer token;
// the API enforces the session's tenant and scopes (a read-only session is refused every
// change there, whatever this page shows). Everything from the API is set as text, never
// parsed as HTML, and the content security policy allows no script but these modules, from
// this origin.
//
// The modules, from the top down (imports point down: scripts/check-imports checks them):
// main.js starts the session and listens for navigation; router.js draws the screen of an
// address; a module per screen: webhooks.js (the list), webhook.js (one webhook, new or
// existing, with forms.js for its fields), deliveries.js, events.js (events and event
// types); nav.js (addresses, pagers, filter bars), api.js (the API client), session.js
// (the session and its gates) and dom.js (element helpers) at the bottom.

import { api } from './api.js';
import { $, append, clear, h, time } from './dom.js';
import { render } from './nav.js';
import { claimsOf, gate, readSession, session } from './session.js';
// The router draws each screen; importing it registers it.
import './router.js';

async function start() {
  const token = readSession();
  if (!token) return gate('missing');
  const claims = claimsOf(token);
  if (!claims) return gate('invalid');
  // The server decides whether the link is good (this browser's clock may be off); the
  // clock only words the page when it is not.
  Object.assign(session, { token, expiresAt: claims.exp * 1000, readOnly: true, scopes: [] });
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

start().catch((e) => showStartError(e));
