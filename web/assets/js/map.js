// A small slippy map: Web Mercator, 256 px raster tiles as <img>s, markers with a name and an
// accuracy circle. Pan and zoom with a mouse (drag, wheel, double click), touch (drag, pinch)
// and the keyboard (arrows, + and -). Without tiles (none configured, or the tile server
// unreachable) it draws a plain grid, so markers and names still make sense.

const TILE = 256;
const MAX_LAT = 85.05112878;
const EARTH_CIRCUMFERENCE = 40075016.686; // metres at the equator
const KEY_PAN = 96;

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** World pixel coordinates of a position at zoom `z`. */
export function project(lat, lng, z) {
  const size = TILE * 2 ** z;
  const phi = (clamp(lat, -MAX_LAT, MAX_LAT) * Math.PI) / 180;
  return {
    x: ((lng + 180) / 360) * size,
    y: ((1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2) * size,
  };
}

/** The position of world pixel coordinates at zoom `z`. */
export function unproject(x, y, z) {
  const size = TILE * 2 ** z;
  const lng = (x / size) * 360 - 180;
  const n = Math.PI - (2 * Math.PI * y) / size;
  const lat = (180 / Math.PI) * Math.atan(Math.sinh(n));
  return { lat, lng };
}

/** Metres per screen pixel at a latitude and zoom. */
export function metresPerPixel(lat, z) {
  return (EARTH_CIRCUMFERENCE * Math.cos((lat * Math.PI) / 180)) / (TILE * 2 ** z);
}

export class SlippyMap {
  /**
   * @param {HTMLElement} container an empty element; it gets the map's layers and controls
   * @param {{tileUrl: string|null, center?: [number, number], zoom?: number, onUserMove?: () => void}} opts
   */
  constructor(container, opts = {}) {
    this.container = container;
    this.tileUrl = opts.tileUrl ?? null;
    this.minZoom = 1;
    this.maxZoom = 19;
    this.center = { lat: opts.center?.[0] ?? 20, lng: opts.center?.[1] ?? 0 };
    this.zoom = opts.zoom ?? 2;
    this.onUserMove = opts.onUserMove ?? (() => {});
    // Set while the page wants a position picked: a click then means "here", not "pan".
    this.onPick = null;
    this.downAt = null;
    this.destination = null;
    this.tiles = new Map();
    this.markers = new Map();
    this.pointers = new Map();
    this.gesture = null;
    this.frame = 0;

    container.classList.add('map');
    container.tabIndex = 0;
    container.setAttribute('role', 'application');
    container.setAttribute('aria-roledescription', 'map');
    container.setAttribute('aria-label', 'Map. Arrow keys pan, plus and minus zoom.');

    this.tilePane = document.createElement('div');
    this.tilePane.className = 'map-tiles';
    this.tilePane.setAttribute('aria-hidden', 'true');
    this.markerPane = document.createElement('div');
    this.markerPane.className = 'map-markers';
    this.markerPane.setAttribute('aria-hidden', 'true');

    const zoomIn = this.button('+', 'Zoom in', () => this.zoomBy(1));
    const zoomOut = this.button('−', 'Zoom out', () => this.zoomBy(-1));
    const zoomBar = document.createElement('div');
    zoomBar.className = 'map-zoom';
    zoomBar.append(zoomIn, zoomOut);

    const attribution = document.createElement('div');
    attribution.className = 'map-attribution';
    if (this.tileUrl) {
      const link = document.createElement('a');
      link.href = 'https://www.openstreetmap.org/copyright';
      link.target = '_blank';
      link.rel = 'noopener';
      link.textContent = '© OpenStreetMap contributors';
      attribution.append(link);
    } else {
      attribution.textContent = 'Map tiles off';
      container.classList.add('map-no-tiles');
    }
    container.append(this.tilePane, this.markerPane, zoomBar, attribution);

    container.addEventListener('pointerdown', (e) => this.pointerDown(e));
    container.addEventListener('pointermove', (e) => this.pointerMove(e));
    container.addEventListener('pointerup', (e) => this.pointerUp(e));
    container.addEventListener('pointercancel', (e) => this.pointerUp(e));
    container.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    container.addEventListener('dblclick', (e) => this.doubleClick(e));
    container.addEventListener('click', (e) => this.click(e));
    container.addEventListener('keydown', (e) => this.key(e));
    new ResizeObserver(() => this.render()).observe(container);
    this.render();
  }

  button(text, label, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.setAttribute('aria-label', label);
    b.title = label;
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      onClick();
    });
    b.addEventListener('dblclick', (e) => e.stopPropagation());
    return b;
  }

  // ---------------------------------------------------------------- view

  size() {
    return { w: this.container.clientWidth || 1, h: this.container.clientHeight || 1 };
  }

  /** Screen position (relative to the container) of a lat/lng. */
  toScreen(lat, lng) {
    const { w, h } = this.size();
    const c = project(this.center.lat, this.center.lng, this.zoom);
    const p = project(lat, lng, this.zoom);
    let dx = p.x - c.x;
    // Take the shorter way round the antimeridian.
    const world = TILE * 2 ** this.zoom;
    if (dx > world / 2) dx -= world;
    if (dx < -world / 2) dx += world;
    return { x: w / 2 + dx, y: h / 2 + (p.y - c.y) };
  }

  /** The lat/lng under a screen position. */
  fromScreen(x, y) {
    const { w, h } = this.size();
    const c = project(this.center.lat, this.center.lng, this.zoom);
    const world = TILE * 2 ** this.zoom;
    const wx = (((c.x + x - w / 2) % world) + world) % world;
    const wy = clamp(c.y + y - h / 2, 0, world);
    return unproject(wx, wy, this.zoom);
  }

  setView(lat, lng, zoom = this.zoom) {
    this.zoom = clamp(zoom, this.minZoom, this.maxZoom);
    this.center = { lat: clamp(lat, -MAX_LAT, MAX_LAT), lng: ((((lng + 180) % 360) + 360) % 360) - 180 };
    this.render();
  }

  panBy(dx, dy) {
    const c = project(this.center.lat, this.center.lng, this.zoom);
    const p = unproject(c.x + dx, clamp(c.y + dy, 0, TILE * 2 ** this.zoom), this.zoom);
    this.setView(p.lat, p.lng);
  }

  /** Zooms keeping the position under the screen point (x, y) where it is. */
  zoomAround(zoom, x, y) {
    zoom = clamp(zoom, this.minZoom, this.maxZoom);
    const { w, h } = this.size();
    const anchor = this.fromScreen(x, y);
    const a = project(anchor.lat, anchor.lng, zoom);
    const c = unproject(a.x - (x - w / 2), clamp(a.y - (y - h / 2), 0, TILE * 2 ** zoom), zoom);
    this.setView(c.lat, c.lng, zoom);
  }

  zoomBy(delta) {
    const { w, h } = this.size();
    this.zoomAround(Math.round(this.zoom) + delta, w / 2, h / 2);
    this.onUserMove();
  }

  /** Shows every point, with some room around them; one point is shown at street level. */
  fitPoints(points, maxZoom = 16) {
    if (!points.length) return;
    if (points.length === 1) {
      this.setView(points[0].lat, points[0].lng, Math.max(Math.min(maxZoom, 16), Math.min(this.zoom, maxZoom)));
      return;
    }
    const { w, h } = this.size();
    const pad = Math.min(80, Math.min(w, h) / 4);
    const ps = points.map((p) => project(p.lat, p.lng, 0));
    const xs = ps.map((p) => p.x);
    const ys = ps.map((p) => p.y);
    const dx = Math.max(...xs) - Math.min(...xs);
    const dy = Math.max(...ys) - Math.min(...ys);
    const zx = dx > 0 ? Math.log2((w - 2 * pad) / dx) : maxZoom;
    const zy = dy > 0 ? Math.log2((h - 2 * pad) / dy) : maxZoom;
    const zoom = clamp(Math.floor(Math.min(zx, zy, maxZoom) * 4) / 4, this.minZoom, this.maxZoom);
    const centre = unproject((Math.max(...xs) + Math.min(...xs)) / 2, (Math.max(...ys) + Math.min(...ys)) / 2, 0);
    this.setView(centre.lat, centre.lng, zoom);
  }

  render() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const { w, h } = this.size();
    const tz = clamp(Math.round(this.zoom), 0, this.maxZoom);
    const scale = 2 ** (this.zoom - tz);
    const c = project(this.center.lat, this.center.lng, tz);
    const left = c.x - w / 2 / scale;
    const top = c.y - h / 2 / scale;
    const step = TILE * scale;

    // The grid under the tiles moves with the map: it is the map when there are no tiles.
    this.container.style.backgroundSize = `${step}px ${step}px`;
    this.container.style.backgroundPosition = `${-(left * scale) % step}px ${-(top * scale) % step}px`;

    if (this.tileUrl) {
      const count = 2 ** tz;
      const wanted = new Set();
      const x0 = Math.floor(left / TILE);
      const x1 = Math.floor((left + w / scale) / TILE);
      const y0 = Math.max(0, Math.floor(top / TILE));
      const y1 = Math.min(count - 1, Math.floor((top + h / scale) / TILE));
      for (let ty = y0; ty <= y1; ty++) {
        for (let tx = x0; tx <= x1; tx++) {
          const key = `${tz}/${tx}/${ty}`;
          wanted.add(key);
          let img = this.tiles.get(key);
          if (!img) {
            img = this.tile(tz, ((tx % count) + count) % count, ty);
            this.tiles.set(key, img);
            this.tilePane.append(img);
          }
          img.style.width = img.style.height = `${step + 0.5}px`;
          img.style.transform = `translate(${(tx * TILE - left) * scale}px, ${(ty * TILE - top) * scale}px)`;
        }
      }
      for (const [key, img] of this.tiles) {
        if (!wanted.has(key)) {
          img.remove();
          this.tiles.delete(key);
        }
      }
    }
    for (const marker of this.markers.values()) this.placeMarker(marker);
    this.placeDestination();
  }

  tile(z, x, y) {
    const img = document.createElement('img');
    img.alt = '';
    img.draggable = false;
    img.decoding = 'async';
    // The page itself sends no referrer (its URL names the session); tile servers such as
    // OpenStreetMap's ask for one, so tiles send this site's origin and nothing more.
    img.referrerPolicy = 'strict-origin';
    img.className = 'map-tile';
    img.addEventListener('load', () => img.classList.add('loaded'));
    img.addEventListener('error', () => img.classList.add('failed'));
    const sub = 'abc'[(x + y) % 3];
    img.src = this.tileUrl.replace('{z}', z).replace('{x}', x).replace('{y}', y).replace('{s}', sub);
    return img;
  }

  // ---------------------------------------------------------------- markers

  /** Adds or updates a marker: `{lat, lng, accuracy, color, label, stale, self}`. */
  setMarker(id, data) {
    let marker = this.markers.get(id);
    if (!marker) {
      const root = document.createElement('div');
      root.className = 'marker';
      root.dataset.userId = id;
      const circle = document.createElement('div');
      circle.className = 'marker-accuracy';
      const dot = document.createElement('div');
      dot.className = 'marker-dot';
      const label = document.createElement('div');
      label.className = 'marker-label';
      root.append(circle, dot, label);
      this.markerPane.append(root);
      marker = { id, root, circle, dot, label, data: {} };
      this.markers.set(id, marker);
    }
    marker.data = { ...marker.data, ...data };
    const d = marker.data;
    marker.label.textContent = d.label ?? '';
    marker.dot.style.backgroundColor = d.color ?? '#555';
    marker.circle.style.borderColor = d.color ?? '#555';
    marker.circle.style.backgroundColor = `${d.color ?? '#555555'}22`;
    marker.root.classList.toggle('stale', !!d.stale);
    marker.root.classList.toggle('self', !!d.self);
    this.placeMarker(marker);
  }

  removeMarker(id) {
    const marker = this.markers.get(id);
    if (!marker) return;
    marker.root.remove();
    this.markers.delete(id);
  }

  hasMarker(id) {
    return this.markers.has(id);
  }

  placeMarker(marker) {
    const d = marker.data;
    if (!Number.isFinite(d.lat) || !Number.isFinite(d.lng)) {
      marker.root.hidden = true;
      return;
    }
    marker.root.hidden = false;
    const p = this.toScreen(d.lat, d.lng);
    marker.root.style.transform = `translate(${p.x}px, ${p.y}px)`;
    const r = Number.isFinite(d.accuracy) && d.accuracy > 0 ? d.accuracy / metresPerPixel(d.lat, this.zoom) : 0;
    const radius = Math.min(r, 4000);
    marker.circle.hidden = radius < 6;
    marker.circle.style.width = marker.circle.style.height = `${2 * radius}px`;
  }

  // ---------------------------------------------------------------- destination

  /** Shows the meeting point, `{lat, lng, radius_m, label}`, or removes it with null. */
  setDestination(dest) {
    if (!dest) {
      this.destination?.root.remove();
      this.destination = null;
      return;
    }
    if (!this.destination) {
      const root = document.createElement('div');
      root.className = 'destination';
      const circle = document.createElement('div');
      circle.className = 'destination-radius';
      const pin = document.createElement('div');
      pin.className = 'destination-pin';
      const label = document.createElement('div');
      label.className = 'destination-label';
      root.append(circle, pin, label);
      // Under the people: they are what moves, and they must stay clickable-looking on top.
      this.markerPane.prepend(root);
      this.destination = { root, circle, pin, label, data: null };
    }
    this.destination.data = dest;
    this.destination.label.textContent = dest.label || 'Meeting point';
    this.placeDestination();
  }

  placeDestination() {
    const d = this.destination;
    if (!d?.data) return;
    const p = this.toScreen(d.data.lat, d.data.lng);
    d.root.style.transform = `translate(${p.x}px, ${p.y}px)`;
    // Capped: at a far zoom-in a 5 km circle would be a huge layer for nothing.
    const r = Math.min(d.data.radius_m / metresPerPixel(d.data.lat, this.zoom), 6000);
    d.circle.style.width = d.circle.style.height = `${2 * r}px`;
  }

  // ---------------------------------------------------------------- input

  local(e) {
    const rect = this.container.getBoundingClientRect();
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }

  pointerDown(e) {
    if (e.target.closest('button, a')) return;
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    this.container.setPointerCapture?.(e.pointerId);
    this.pointers.set(e.pointerId, this.local(e));
    this.downAt = this.local(e);
    this.startGesture();
    this.container.classList.add('dragging');
  }

  startGesture() {
    const pts = [...this.pointers.values()];
    if (pts.length === 1) {
      this.gesture = { kind: 'pan', last: pts[0] };
    } else if (pts.length >= 2) {
      const [a, b] = pts;
      this.gesture = {
        kind: 'pinch',
        dist: Math.hypot(a.x - b.x, a.y - b.y) || 1,
        zoom: this.zoom,
        mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 },
      };
    } else {
      this.gesture = null;
    }
  }

  pointerMove(e) {
    if (!this.pointers.has(e.pointerId) || !this.gesture) return;
    this.pointers.set(e.pointerId, this.local(e));
    const pts = [...this.pointers.values()];
    if (this.gesture.kind === 'pan' && pts.length === 1) {
      const p = pts[0];
      const dx = this.gesture.last.x - p.x;
      const dy = this.gesture.last.y - p.y;
      this.gesture.last = p;
      if (dx || dy) {
        this.panBy(dx, dy);
        this.onUserMove();
      }
    } else if (this.gesture.kind === 'pinch' && pts.length >= 2) {
      const [a, b] = pts;
      const dist = Math.hypot(a.x - b.x, a.y - b.y) || 1;
      const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      // Follow the fingers' midpoint, then scale around it.
      this.panBy(this.gesture.mid.x - mid.x, this.gesture.mid.y - mid.y);
      this.gesture.mid = mid;
      this.zoomAround(this.gesture.zoom + Math.log2(dist / this.gesture.dist), mid.x, mid.y);
      this.onUserMove();
    }
  }

  pointerUp(e) {
    if (!this.pointers.delete(e.pointerId)) return;
    this.startGesture();
    if (!this.pointers.size) this.container.classList.remove('dragging');
  }

  wheel(e) {
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 800 : 1;
    const delta = clamp(-e.deltaY * unit * 0.0025, -1, 1);
    if (!delta) return;
    const p = this.local(e);
    this.zoomAround(this.zoom + delta, p.x, p.y);
    this.onUserMove();
  }

  click(e) {
    if (!this.onPick || e.target.closest('button, a')) return;
    const p = this.local(e);
    // A drag that ended here is a pan, not a pick.
    if (this.downAt && Math.hypot(p.x - this.downAt.x, p.y - this.downAt.y) > 6) return;
    this.onPick(this.fromScreen(p.x, p.y));
  }

  doubleClick(e) {
    if (e.target.closest('button, a')) return;
    e.preventDefault();
    const p = this.local(e);
    this.zoomAround(Math.round(this.zoom) + (e.shiftKey ? -1 : 1), p.x, p.y);
    this.onUserMove();
  }

  key(e) {
    if (e.target !== this.container || e.altKey || e.ctrlKey || e.metaKey) return;
    const moves = { ArrowLeft: [-KEY_PAN, 0], ArrowRight: [KEY_PAN, 0], ArrowUp: [0, -KEY_PAN], ArrowDown: [0, KEY_PAN] };
    if (moves[e.key]) {
      this.panBy(...moves[e.key]);
    } else if (e.key === '+' || e.key === '=') {
      this.zoomBy(1);
    } else if (e.key === '-' || e.key === '_') {
      this.zoomBy(-1);
    } else {
      return;
    }
    e.preventDefault();
    this.onUserMove();
  }
}
