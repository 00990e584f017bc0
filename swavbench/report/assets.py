"""The report's inline stylesheet and its one tiny script (no external fonts, files or CDNs)."""

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#1d2329;background:#f4f6f8}
header{background:#1d2b3a;color:#fff;padding:18px 28px 14px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header p{margin:0;color:#c8d3de;font-size:13px}
nav{margin-top:10px;font-size:13px}
nav a{color:#9fd0ff;margin-right:14px;text-decoration:none}
main{max-width:1400px;margin:0 auto;padding:18px 28px 40px}
h2{font-size:18px;margin:26px 0 10px;padding-bottom:4px;border-bottom:2px solid #d5dde5}
h3{font-size:14px;margin:14px 0 6px;color:#3a4652}
section.card{background:#fff;border:1px solid #dde3e9;border-radius:6px;padding:4px 18px 14px;margin:18px 0}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #dde3e9;padding:5px 9px;text-align:left;vertical-align:top}
th{background:#eef2f6;font-weight:600}
td.nowrap{white-space:nowrap}
table.ranks td{text-align:right;font-variant-numeric:tabular-nums}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.metric .b,td.metric .d{display:block;color:#67737f;font-size:12px}
td.metric.fail,tr.fail td{background:#fff1ec}tr.fail td:last-child{color:#c62828;font-weight:600}
td.metric.fail .d{color:#c62828;font-weight:600}
.badge{display:inline-block;min-width:82px;text-align:center;padding:1px 8px;border-radius:10px;color:#fff;
 font-size:12px;font-weight:600;white-space:nowrap}
.pass{background:#2e7d32}.regression{background:#d84315}.failed{background:#b71c1c}.no_baseline{background:#757575}
.badge.unknown{background:#455a64}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:10px 18px}
.charts.steps{grid-template-columns:repeat(auto-fill,minmax(540px,1fr))}
figure{margin:0}figcaption{font-weight:600;font-size:13px;margin:6px 0 2px;color:#3a4652}
svg.chart{max-width:100%;height:auto;font-size:11px;display:block}
svg.chart text:not([fill]){fill:#404b55}svg.chart text.val{font-weight:600}
svg.chart circle.pt{stroke:#fff;stroke-width:1.5}svg.chart a:hover circle.pt{stroke:#000}
details.run{border:1px solid #dde3e9;border-radius:5px;margin:6px 0;background:#fbfcfd}
details.run>summary{cursor:pointer;padding:6px 10px;font-size:13px;list-style-position:inside}
details.run>summary code{color:#55616d}
details.run[open]>summary{border-bottom:1px solid #dde3e9;background:#f0f4f8}
.run-body{padding:6px 14px 12px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.msg{margin:6px 0}.advice{color:#55616d}
.failure{border-left:4px solid #b71c1c;background:#fff5f5;padding:6px 12px;margin:8px 0}
pre{background:#1e2327;color:#e8e8e8;padding:8px 10px;border-radius:4px;overflow-x:auto;font-size:12px;
 max-height:360px;margin:6px 0}
code{font-size:12px}
.muted{color:#67737f}
header h1 .badge{vertical-align:middle}
.scroll{overflow-x:auto}table.triage{font-size:12px}
td.streak{min-width:250px}td.message{min-width:180px;max-width:340px}td.rollup{font-weight:600}
.charts.trend{grid-template-columns:1fr}
ul.logs{columns:4 180px;margin:6px 0;padding-left:18px;font-size:13px}
"""

# Records how many charts and chart points were laid out (data-charts, data-charts-drawn, data-points-drawn on
# <body>) and how long after navigation that was (data-render-ms), so a headless browser can check that the page
# rendered, and how fast.
JS = """
(function(){
function drawn(list){var n=0;for(var i=0;i<list.length;i++){var r=list[i].getBoundingClientRect();
 if(r.width>0&&r.height>0)n++;}return String(n);}
document.addEventListener('DOMContentLoaded',function(){
 var c=document.querySelectorAll('svg.chart'),b=document.body;b.setAttribute('data-charts',String(c.length));
 b.setAttribute('data-charts-drawn',drawn(c));
 b.setAttribute('data-points-drawn',drawn(document.querySelectorAll('svg.chart .pt')));
 b.setAttribute('data-render-ms',String(Math.round(performance.now())));});
})();
"""
