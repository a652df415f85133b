// Small DOM and formatting helpers shared by the pages. User text is only ever set with
// textContent: nothing here parses HTML.

/** Settings the server put in <meta> tags. */
export function config() {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
  const tileUrl = meta('tile-url');
  const ttl = Number.parseInt(meta('location-ttl'), 10);
  return {
    geocoderUrl: meta('geocoder-url').replace(/\/+$/, '') || null,
    tileUrl: tileUrl && tileUrl.toLowerCase() !== 'none' ? tileUrl : null,
    locationTtlMs: (Number.isFinite(ttl) && ttl > 0 ? ttl : 30) * 1000,
  };
}

/**
 * Creates an element. `props`: `class`, `text` (textContent), `dataset`, `on` ({event: fn}),
 * and any other key as an attribute (boolean true sets it empty, false/null leaves it out).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The element with this id (throws when the page lacks it: a bug, not a user error). */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/** Shows exactly one of `views` (ids), hiding the others. */
export function showView(views, visible) {
  for (const id of views) byId(id).hidden = id !== visible;
}

/** Writes a message into a live region (role=status or alert) so screen readers announce it. */
export function announce(region, text, kind = 'info') {
  region.textContent = text;
  region.dataset.kind = kind;
  region.hidden = !text;
}

/** "just now", "12 s ago", "4 min ago", "2 h ago". */
export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 3) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min ago`;
}

/** A local clock time, e.g. "14:05". */
export function clock(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** "in 3 h 20 min" / "in 12 min" until a time. */
export function until(date) {
  const m = Math.max(0, Math.round((date.getTime() - Date.now()) / 60000));
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

// ------------------------------------------------------------------ storage
//
// Per sharing session, under keys that name it: the creator's token (`ls.creator.{sid}`) and this
// browser's participant (`ls.me.{sid}`). Each entry carries the session's expiry and is removed
// when the session ends, expires, or the person leaves.

const PREFIX = 'ls.';

function readJson(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled (private mode): the page still works for this visit.
  }
}

export const storage = {
  creator(sid) {
    return readJson(`${PREFIX}creator.${sid}`);
  },
  setCreator(sid, value) {
    writeJson(`${PREFIX}creator.${sid}`, value);
  },
  me(sid) {
    return readJson(`${PREFIX}me.${sid}`);
  },
  setMe(sid, value) {
    writeJson(`${PREFIX}me.${sid}`, value);
  },
  forgetMe(sid) {
    try { localStorage.removeItem(`${PREFIX}me.${sid}`); } catch { /* ignore */ }
  },
  forgetSession(sid) {
    try {
      localStorage.removeItem(`${PREFIX}creator.${sid}`);
      localStorage.removeItem(`${PREFIX}me.${sid}`);
    } catch { /* ignore */ }
    tabKey.forget(sid);
  },
  /** Sessions this browser created that have not expired, newest first. */
  created() {
    const out = [];
    try {
      for (let i = 0; i < localStorage.length; i++) {
        const key = localStorage.key(i);
        if (key?.startsWith(`${PREFIX}creator.`)) {
          const value = readJson(key);
          if (value?.session_id) out.push(value);
        }
      }
    } catch { /* ignore */ }
    return out.sort((a, b) => (b.created_at ?? '').localeCompare(a.created_at ?? ''));
  },
  /** Drops every entry whose session has expired. */
  prune() {
    try {
      const now = Date.now();
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const key = localStorage.key(i);
        if (!key?.startsWith(PREFIX)) continue;
        const value = readJson(key);
        const expires = Date.parse(value?.expires_at ?? '');
        if (!Number.isFinite(expires) || expires <= now) localStorage.removeItem(key);
      }
    } catch { /* ignore */ }
  },
};

// The key of an end-to-end encrypted session (`ls.key.{sid}`) lives in this tab only
// (sessionStorage): it survives a reload, never reaches localStorage, and is gone with the tab.
// It is never sent anywhere: the link carries it in its fragment, which browsers do not send.
export const tabKey = {
  get(sid) {
    try {
      return sessionStorage.getItem(`${PREFIX}key.${sid}`);
    } catch {
      return null;
    }
  },
  set(sid, key) {
    try {
      sessionStorage.setItem(`${PREFIX}key.${sid}`, key);
    } catch { /* storage disabled: the key lives as long as this page */ }
  },
  forget(sid) {
    try { sessionStorage.removeItem(`${PREFIX}key.${sid}`); } catch { /* ignore */ }
  },
};
