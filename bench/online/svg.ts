/**
 * A hand-written SVG line chart of prequential accuracy curves (no dependency): one panel per model,
 * x = samples seen, y = running accuracy (mean over streams), one line per method.
 */

export interface Series {
  label: string;
  x: readonly number[];
  y: readonly number[];
  dashed?: boolean;
  color?: string;
}

export interface Panel {
  title: string;
  subtitle?: string;
  series: Series[];
  /** A horizontal reference line (e.g. the best AdamW's final accuracy). */
  reference?: { y: number; label: string };
}

const COLORS = ['#d62728', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#1f77b4', '#2ca02c', '#7f7f7f', '#e377c2', '#bcbd22'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= count) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

export function renderChart(panels: Panel[], title: string): string {
  const pw = 520;
  const ph = 360;
  const ml = 56;
  const mr = 16;
  const mt = 56;
  const mb = 48;
  const legendH = 20 * Math.ceil(Math.max(...panels.map((p) => p.series.length)) / 2) + 10;
  const W = panels.length * (pw + ml + mr) + 10;
  const H = mt + ph + mb + legendH + 10;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  panels.forEach((panel, k) => {
    const ox = k * (pw + ml + mr) + ml;
    const oy = mt;
    const xs = panel.series.flatMap((s) => s.x);
    const ys = panel.series.flatMap((s) => s.y).filter((v) => Number.isFinite(v));
    if (panel.reference) ys.push(panel.reference.y);
    const xmax = Math.max(...xs, 1);
    let ylo = Math.max(0, Math.floor((Math.min(...ys) - 0.02) * 20) / 20);
    let yhi = Math.min(1, Math.ceil((Math.max(...ys) + 0.02) * 20) / 20);
    if (!(yhi > ylo)) {
      ylo = 0;
      yhi = 1;
    }
    const X = (v: number) => ox + (v / xmax) * pw;
    const Y = (v: number) => oy + ph - ((v - ylo) / (yhi - ylo)) * ph;
    parts.push(`<text x="${ox + pw / 2}" y="${oy - 22}" text-anchor="middle" font-size="13" font-weight="bold">${esc(panel.title)}</text>`);
    if (panel.subtitle) parts.push(`<text x="${ox + pw / 2}" y="${oy - 7}" text-anchor="middle" font-size="11" fill="#555">${esc(panel.subtitle)}</text>`);
    parts.push(`<rect x="${ox}" y="${oy}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
    for (const t of niceTicks(ylo, yhi, 8)) {
      parts.push(`<line x1="${ox}" x2="${ox + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
      parts.push(`<text x="${ox - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${t.toFixed(2)}</text>`);
    }
    for (const t of niceTicks(0, xmax, 8)) {
      parts.push(`<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${oy}" y2="${oy + ph}" stroke="#f0f0f0"/>`);
      parts.push(`<text x="${X(t).toFixed(1)}" y="${oy + ph + 16}" text-anchor="middle">${t}</text>`);
    }
    parts.push(`<text x="${ox + pw / 2}" y="${oy + ph + 34}" text-anchor="middle">samples seen (batch 1)</text>`);
    parts.push(`<text transform="translate(${ox - 42},${oy + ph / 2}) rotate(-90)" text-anchor="middle">prequential accuracy (running)</text>`);
    if (panel.reference) {
      const y = Y(panel.reference.y).toFixed(1);
      parts.push(`<line x1="${ox}" x2="${ox + pw}" y1="${y}" y2="${y}" stroke="#1f77b4" stroke-dasharray="2,3"/>`);
      parts.push(`<text x="${ox + 4}" y="${(Number(y) - 4).toFixed(1)}" fill="#1f77b4" font-size="10">${esc(panel.reference.label)}</text>`);
    }
    panel.series.forEach((s, i) => {
      const color = s.color ?? COLORS[i % COLORS.length]!;
      const pts = s.x.map((x, j) => `${X(x).toFixed(1)},${Y(s.y[j]!).toFixed(1)}`).filter((_, j) => Number.isFinite(s.y[j]!));
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="${s.dashed ? 1.5 : 2}"${s.dashed ? ' stroke-dasharray="6,3"' : ''} points="${pts.join(' ')}"/>`);
      const lx = ox + (i % 2) * (pw / 2);
      const ly = oy + ph + mb + 14 + Math.floor(i / 2) * 20;
      parts.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,3"' : ''}/>`);
      parts.push(`<text x="${lx + 30}" y="${ly}">${esc(s.label)}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
