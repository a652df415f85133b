// Draws a QR code matrix (computed by the server: GET /api/sessions/{id}/qr) on a <canvas>.

const QUIET_ZONE = 4; // modules of light border the standard asks for

/**
 * @param {HTMLCanvasElement} canvas
 * @param {{size: number, modules: string}} matrix `modules`: size×size of "1" (dark) / "0"
 * @param {number} cssSize the canvas's size on screen, in CSS pixels
 */
export function drawQr(canvas, matrix, cssSize = 200) {
  const { size, modules } = matrix;
  if (!Number.isInteger(size) || size <= 0 || modules.length !== size * size) {
    throw new Error('malformed QR matrix');
  }
  const total = size + 2 * QUIET_ZONE;
  const ratio = window.devicePixelRatio || 1;
  // Whole device pixels per module keep the edges sharp.
  const scale = Math.max(1, Math.floor((cssSize * ratio) / total));
  const px = total * scale;
  canvas.width = px;
  canvas.height = px;
  canvas.style.width = `${px / ratio}px`;
  canvas.style.height = `${px / ratio}px`;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, px, px);
  ctx.fillStyle = '#000000';
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (modules.charCodeAt(y * size + x) === 49 /* "1" */) {
        ctx.fillRect((x + QUIET_ZONE) * scale, (y + QUIET_ZONE) * scale, scale, scale);
      }
    }
  }
}
