// Forms: fields with their hints and the API's message for each, and the webhook's fields.

import { ApiError } from './api.js';
import { $, busy, clear, h, json, nextId } from './dom.js';
import { can } from './session.js';

// A form field: label, control, hint and the API's message for it.
export function field(form, spec) {
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

export function clearErrors(form) {
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
export function fieldError(form, name, message) {
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
export function errorField(e) {
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

export function readJson(form, name, fallback) {
  const text = form.fields[name].value.trim();
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`${name}: not valid JSON (${e.message})`), { field: name });
  }
}

export function readEvents(form) {
  return form.fields.events.value
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export function readRateLimit(form) {
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
export function webhookFields(form, wh, types) {
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
export function formShell(label, onsubmit, scope) {
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
