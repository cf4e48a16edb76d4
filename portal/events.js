// Events and event types.

import { DELIVERY_STATUSES, api, catalogue, query, someWebhooks } from './api.js';
import { DELIVERY_HEADINGS, deliveryRows } from './deliveries.js';
import { busy, empty, h, json, link, nextId, setFlash, table, time } from './dom.js';
import { filters, firstPage, pageParams, pager, render } from './nav.js';
import { action, can } from './session.js';

export async function eventsScreen(_, params) {
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

export async function eventScreen([id], params) {
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

export async function eventTypesScreen(_, params) {
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
