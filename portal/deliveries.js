// Deliveries: the log with its filters, and one delivery with its attempts.

import { DELIVERY_STATUSES, api, catalogue, query, someWebhooks } from './api.js';
import { badge, busy, empty, h, link, setFlash, table, time } from './dom.js';
import { filters, firstPage, pageParams, pager, render } from './nav.js';
import { action } from './session.js';
import { recoverSection } from './webhook.js';

export function deliveryRows(deliveries, names) {
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

export const DELIVERY_HEADINGS = ['Delivery', 'Event type', 'Webhook', 'Status', 'Attempts', 'Last result', 'Created'];

export async function deliveriesScreen(_, params) {
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

export async function deliveryScreen([id]) {
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
