"""The report's stylesheet, inlined into the HTML (no external fonts or files: the report is one
self-contained file). System font stacks only; numbers use tabular figures so columns align."""

CSS = """
:root {
  --ink: #1d2433; --muted: #5b6473; --line: #dfe3ea; --paper: #ffffff; --bg: #f4f6f9;
  --accent: #1b9e77; --accent-soft: #e3f4ee; --warn: #a15c00; --warn-soft: #fff4e0;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body {
  margin: 0; color: var(--ink); font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
}
header.top {
  background: #14213d; color: #fff; padding: 28px 0 22px;
}
header.top .wrap { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; }
header.top h1 { margin: 0; font-size: 26px; font-weight: 650; letter-spacing: .2px; }
header.top h1 .tool { color: #8fd3bf; }
header.top p { margin: 0; color: #c9d2e3; font-size: 14px; }
nav.toc { background: #1f2d4d; }
nav.toc .wrap { display: flex; flex-wrap: wrap; gap: 4px 22px; padding-top: 8px; padding-bottom: 8px; }
nav.toc a { color: #dbe4f5; text-decoration: none; font-size: 14px; }
nav.toc a:hover { color: #fff; text-decoration: underline; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
main { padding: 8px 0 40px; }
section.block {
  background: var(--paper); border: 1px solid var(--line); border-radius: 10px;
  padding: 22px 26px 10px; margin: 22px 0;
}
section.block > h2 { margin: 0 0 4px; font-size: 21px; }
section.block > p.lead { margin: 0 0 18px; color: var(--muted); max-width: 80ch; }
h3 { font-size: 16px; margin: 0 0 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 6px 0 18px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: #fbfcfd; }
.card .label { color: var(--muted); font-size: 12.5px; text-transform: uppercase; letter-spacing: .4px; }
.card .value { font-size: 21px; font-weight: 650; font-variant-numeric: tabular-nums; margin-top: 2px; }
.card .sub { color: var(--muted); font-size: 13px; }
.card.good { border-color: #9ed8c6; background: var(--accent-soft); }
figure.fig {
  display: grid; grid-template-columns: minmax(0, 2.3fr) minmax(230px, 1fr); gap: 18px 26px;
  align-items: start; margin: 0 0 26px; padding-top: 18px; border-top: 1px solid var(--line);
}
figure.fig.wide { grid-template-columns: 1fr; }
figure.fig img { width: 100%; height: auto; display: block; border-radius: 4px; }
figure.fig figcaption { color: var(--ink); font-size: 14.5px; }
figure.fig figcaption p { margin: 0 0 8px; }
figure.fig figcaption .how { color: var(--muted); font-size: 13.5px; }
@media (max-width: 860px) { figure.fig { grid-template-columns: 1fr; } }
.table-scroll { overflow-x: auto; margin: 4px 0 22px; }
table.data { border-collapse: collapse; width: 100%; font-size: 14px; }
table.data caption { text-align: left; color: var(--muted); font-size: 13.5px; padding-bottom: 6px; caption-side: top; }
table.data th, table.data td { padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.data th { text-align: left; background: #f0f3f7; font-weight: 600; white-space: nowrap; }
table.data td.num, table.data th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.data tbody tr:nth-child(even) td { background: #fafbfc; }
table.data td.group { background: #fff !important; font-weight: 600; border-right: 1px solid var(--line); }
table.data tr.best td:not(.group) { background: var(--accent-soft) !important; }
table.data tr.oracle td:not(.group) { color: var(--muted); font-style: italic; }
table.data td.mono, code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
table.kv th { width: 210px; background: #f7f9fb; }
table.kv td { word-break: break-word; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600;
  background: var(--accent); color: #fff; margin-left: 6px; vertical-align: 1px; }
.note { background: var(--warn-soft); border-left: 4px solid var(--warn); padding: 8px 12px; margin: 8px 0 16px; border-radius: 4px; }
.nowrap, table.data td.group { white-space: nowrap; }
.muted { color: var(--muted); }
.stop { color: var(--muted); font-size: 13px; }
footer { color: var(--muted); font-size: 13px; padding: 10px 0 40px; }
dl.units { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 16px; }
dl.units dt { font-weight: 600; }
dl.units dd { margin: 0; }
"""
