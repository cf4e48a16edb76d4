// The router: which screen draws which address.

import { ApiError } from './api.js';
import { deliveriesScreen, deliveryScreen } from './deliveries.js';
import { $, append, clear, empty, h, link, showFlash } from './dom.js';
import { eventScreen, eventTypesScreen, eventsScreen } from './events.js';
import { here, onRender } from './nav.js';
import { drawing, session } from './session.js';
import { newWebhookScreen, webhookScreen } from './webhook.js';
import { webhooksScreen } from './webhooks.js';

export const SCREENS = [
  [/^(?:webhooks)?$/, webhooksScreen],
  [/^webhooks\/new$/, newWebhookScreen],
  [/^webhooks\/(wh_[0-9A-Za-z]+)$/, webhookScreen],
  [/^deliveries$/, deliveriesScreen],
  [/^deliveries\/(dlv_[0-9A-Za-z]+)$/, deliveryScreen],
  [/^events$/, eventsScreen],
  [/^events\/(evt_[0-9A-Za-z]+)$/, eventScreen],
  [/^event-types$/, eventTypesScreen],
];

/** Draws the screen for the current address; `moved` puts focus at its top. */
export async function draw(moved) {
  if (!session.token) return;
  drawing.count += 1;
  const mine = drawing.count;
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
  if (mine !== drawing.count) return; // a later navigation won
  const main = clear($('#main'));
  main.append(h('div', { id: 'flash', class: 'flash', role: 'status', hidden: true }));
  append(main, [content]);
  const title = $('h1', main);
  document.title = `${title ? title.textContent : 'Portal'} · Webhooks portal`;
  showFlash();
  if (moved) main.focus();
}

onRender(draw);
