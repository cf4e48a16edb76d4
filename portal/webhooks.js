// The webhooks list, with each webhook's recent success rate.

import { api, query } from './api.js';
import { badge, clear, empty, h, link, table, time } from './dom.js';
import { filters, firstPage, pageParams, pager } from './nav.js';
import { session } from './session.js';

export async function webhooksScreen(_, params) {
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
export async function successRates(cells) {
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
