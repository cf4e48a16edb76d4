// The API client: every call on this origin with the session's token; its errors as
// ApiError, which words the API's message for a person.

import { PORTAL } from './nav.js';
import { gate, session } from './session.js';

export const API = PORTAL.replace(/portal\/$/, ''); // where /v1 lives, same origin

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'buffered', 'cancelled'];

const catalogueCache = { at: 0, types: null };

export class ApiError extends Error {
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

export async function api(method, path, body) {
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

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** The tenant's event types (for pickers), kept for a minute. */
export async function catalogue() {
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
export async function someWebhooks() {
  return (await api('GET', 'v1/webhooks?limit=100')).data;
}
