// One webhook: creating one, and its screen (status, test, secret, settings, Basic
// credentials, recover, delete).

import { api, catalogue } from './api.js';
import { $, append, badge, busy, clear, empty, h, link, nextId, setFlash, showFlash, time } from './dom.js';
import { field, formShell, readEvents, readJson, readRateLimit, webhookFields } from './forms.js';
import { go, render } from './nav.js';
import { action, session } from './session.js';

export async function newWebhookScreen() {
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

export async function webhookScreen([id]) {
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

export async function statusChange(button, path, message) {
  await busy(button, async () => {
    await api('POST', path);
    setFlash(message);
    await render(false);
  });
}

export function testSection(wh, types) {
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

export function secretSection(wh) {
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

export function editSection(wh, types) {
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

export function authSection(wh) {
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
export function localInput(hoursAgo) {
  const at = new Date(Date.now() - hoursAgo * 3600000);
  at.setMinutes(at.getMinutes() - at.getTimezoneOffset());
  return at.toISOString().slice(0, 16);
}

export function recoverSection(webhookId) {
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

export function deleteSection(wh) {
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
