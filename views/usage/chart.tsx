/** @jsxImportSource @kitajs/html */
import { TableScroll, formatCount } from "../components.tsx";

export interface ChartDay {
  day: string;
  successes: number;
  errors: number;
}

const W = 720;
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

/**
 * A round axis maximum (1, 2 or 5 times a power of ten, or 4) whose half, the middle grid
 * line, is a whole number: requests come in whole numbers, a "2.5" tick reads as a bug.
 */
function niceMax(n: number): number {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n && (m * p) % 2 === 0) return m * p;
  return 10 * p;
}

/**
 * Daily successes and errors as stacked bars, rendered on the server as SVG (no JS). The SVG
 * has a title and description, an HTML legend (colours from app.css classes, no inline
 * style) names the two series, and the same numbers follow in a table for screen readers
 * and for copying. On a narrow screen the SVG keeps a readable minimum width and scrolls
 * sideways inside .chart-scroll instead of shrinking.
 */
export function UsageChart(props: { id: string; title: string; days: ChartDay[] }) {
  const max = niceMax(Math.max(0, ...props.days.map((d) => d.successes + d.errors)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, props.days.length);
  const barW = Math.max(1, Math.min(28, slot * 0.7));
  const y = (v: number) => PAD.top + plotH - (v / max) * plotH;
  const labelEvery = Math.ceil(props.days.length / 8);
  const total = props.days.reduce((n, d) => n + d.successes + d.errors, 0);
  return (
    <figure class="chart">
      <figcaption class="chart-legend">
        <span class="legend-item">
          <span class="swatch swatch-ok" aria-hidden="true"></span>Successes
        </span>
        <span class="legend-item">
          <span class="swatch swatch-err" aria-hidden="true"></span>Errors
        </span>
      </figcaption>
      <div class="chart-scroll">
        <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${props.id}-title ${props.id}-desc`} class="usage-chart">
          <title id={`${props.id}-title`} safe>
            {props.title}
          </title>
          <desc id={`${props.id}-desc`} safe>
            {`${formatCount(total)} requests from ${props.days[0]?.day ?? ""} to ${props.days.at(-1)?.day ?? ""}; successes in blue, errors in red.`}
          </desc>
          {[0, 0.5, 1].map((f) => (
            <g>
              <line x1={PAD.left} x2={W - PAD.right} y1={y(max * f)} y2={y(max * f)} class="grid" />
              <text x={PAD.left - 6} y={y(max * f) + 4} text-anchor="end" class="axis" safe>
                {formatCount(max * f)}
              </text>
            </g>
          ))}
          {props.days.map((d, i) => {
            const x = PAD.left + i * slot + (slot - barW) / 2;
            const ok = y(d.successes);
            const errTop = y(d.successes + d.errors);
            return (
              <g>
                <rect x={x} y={ok} width={barW} height={PAD.top + plotH - ok} class="bar-ok" />
                <rect x={x} y={errTop} width={barW} height={ok - errTop} class="bar-err" />
                {i % labelEvery === 0 ? (
                  <text x={x + barW / 2} y={H - 8} text-anchor="middle" class="axis" safe>
                    {d.day.slice(5)}
                  </text>
                ) : (
                  ""
                )}
              </g>
            );
          })}
        </svg>
      </div>
      <details class="chart-data">
        <summary>Data table</summary>
        <TableScroll>
          <table>
            <caption safe>{props.title}</caption>
            <thead>
              <tr>
                <th scope="col">Day (UTC)</th>
                <th scope="col">Successes</th>
                <th scope="col">Errors</th>
              </tr>
            </thead>
            <tbody>
              {props.days.map((d) => (
                <tr>
                  <th scope="row" safe>
                    {d.day}
                  </th>
                  <td safe>{formatCount(d.successes)}</td>
                  <td safe>{formatCount(d.errors)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      </details>
    </figure>
  );
}
