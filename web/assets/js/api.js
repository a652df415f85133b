// The REST API (SPEC §2) with errors turned into sentences a person can act on.

export class ApiError extends Error {
  /** `status` 0 means the server could not be reached. */
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.name = 'ApiError';
    this.status = status;
    this.fields = body?.errors && !body.errors.detail ? body.errors : null;
    this.detail = body?.errors?.detail ?? null;
  }

  static describe(status, body) {
    switch (status) {
      case 0: return 'Cannot reach the server. Check your connection and try again.';
      case 401: return 'This link or token is no longer valid.';
      case 403: return 'You are not allowed to do that.';
      case 404: return 'This session does not exist, or it ended a while ago.';
      case 409: return 'This session is full: it already has the most people it can take.';
      case 410: return 'This session has ended.';
      case 413: return 'That is too long.';
      case 422: {
        const fields = body?.errors ?? {};
        const parts = Object.entries(fields).map(([field, msgs]) => `${field.replace(/_/g, ' ')} ${[].concat(msgs).join(', ')}`);
        return parts.length ? `Please check: ${parts.join('; ')}.` : 'Please check what you entered.';
      }
      case 503: return 'The server is busy or one of its services is down (503). Please try again in a moment.';
      default:
        return status >= 500
          ? `The server had a problem (${status}). Please try again in a moment.`
          : `The request failed (${status}).`;
    }
  }
}

async function request(method, path, { body, token } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, null);
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

const enc = encodeURIComponent;

export const api = {
  createSession: (name, expiresInMinutes, e2e = false) =>
    request('POST', '/api/sessions', { body: { name: name || null, expires_in_minutes: expiresInMinutes, e2e } }),
  session: (sid) => request('GET', `/api/sessions/${enc(sid)}`),
  join: (sid, displayName, avatarColor) =>
    request('POST', `/api/sessions/${enc(sid)}/join`, { body: { display_name: displayName, avatar_color: avatarColor } }),
  participants: (sid) => request('GET', `/api/sessions/${enc(sid)}/participants`),
  remove: (sid, userId, token) => request('DELETE', `/api/sessions/${enc(sid)}/participants/${enc(userId)}`, { token }),
  end: (sid, token) => request('DELETE', `/api/sessions/${enc(sid)}`, { token }),
  setDestination: (sid, body, token) => request('PUT', `/api/sessions/${enc(sid)}/destination`, { body, token }),
  clearDestination: (sid, token) => request('DELETE', `/api/sessions/${enc(sid)}/destination`, { token }),
  update: (sid, body, token) => request('PATCH', `/api/sessions/${enc(sid)}`, { body, token }),
  qr: (sid) => request('GET', `/api/sessions/${enc(sid)}/qr`),
};

/** The WebSocket endpoint on this page's own origin (the page and the API are one server). */
export function socketEndpoint() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/socket`;
}
