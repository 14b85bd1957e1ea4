// The statistics page: draws the report's charts from its JSON data block (bars across, so long labels
// stay readable; a step line over time, in the report's time zone), and keeps the session filter
// to the sessions of the segment chosen.
(() => {
  "use strict";
  const data = document.getElementById("statistics-charts");
  if (!data) return;
  const report = JSON.parse(data.textContent);

  const COLOURS = ["#0b5fa5", "#1d7a46", "#9a6400", "#6b4fa0", "#b3261e", "#4a5563"];
  // As on the quorum dashboard: the count in blue, to open in amber, to decide in green.
  const STEP_COLOURS = ["#0b5fa5", "#9a6400", "#1d7a46", "#6b4fa0"];
  // Pixels per bar and per line of a label: a chart grows with its labels instead of squeezing them.
  const BAR_HEIGHT = 26;
  const THIN_BAR_HEIGHT = 9;
  const LINE_HEIGHT = 15;
  const number = new Intl.NumberFormat("en-GB");
  const timeFormat = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: report.timezone,
  });
  const dayTimeFormat = new Intl.DateTimeFormat("en-GB", {
    day: "numeric",
    month: "short",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone: report.timezone,
  });
  // Server times carry microseconds; keep milliseconds so that every browser parses them.
  const ms = (iso) => Date.parse(iso.replace(/(\.\d{3})\d+/, "$1"));

  // A long label on lines of at most `width` characters (Chart.js draws an array as several lines).
  function wrap(label, width) {
    const lines = [];
    let line = "";
    for (const word of String(label).split(" ")) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else {
        line = line ? `${line} ${word}` : word;
      }
    }
    lines.push(line);
    return lines.length > 1 ? lines : lines[0];
  }

  const labelWidth = (pixels) => (pixels < 500 ? 16 : pixels < 900 ? 30 : 44);

  function barChart(canvas, box, chart) {
    // Each label gets room for its bars and for its lines of text, whichever is more.
    const fit = (pixels) => {
      const width = labelWidth(pixels);
      // Many labels (a meeting's sessions) get thinner bars, so the chart stays a reasonable length.
      const bars = Math.max(chart.series.length, 1) * (chart.labels.length > 20 ? THIN_BAR_HEIGHT : BAR_HEIGHT);
      // Categories are spaced evenly: the label with the most lines sets the spacing of all.
      const lines = Math.max(1, ...chart.labels.map((label) => [wrap(label, width)].flat().length));
      const rows = chart.labels.length * Math.max(bars, lines * LINE_HEIGHT + 10);
      const height = `${Math.max(160, rows + (chart.series.length > 1 ? 90 : 50))}px`;
      if (box.style.height !== height) box.style.height = height;
    };
    fit(box.clientWidth);
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: chart.labels,
        datasets: chart.series.map((series, i) => ({
          label: series.name,
          data: series.values,
          backgroundColor: COLOURS[i % COLOURS.length],
          borderRadius: 3,
          maxBarThickness: 26,
        })),
      },
      options: {
        indexAxis: "y",
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        // Labels wrap differently on a narrower screen: the chart's height follows.
        onResize: (_chart, size) => fit(size.width),
        scales: {
          x: { beginAtZero: true, ticks: { precision: 0, callback: (value) => number.format(value) } },
          y: {
            ticks: {
              autoSkip: false,
              // Narrow screens get narrower labels, so that the bars keep most of the width.
              callback(value) {
                return wrap(this.getLabelForValue(value), labelWidth(this.chart.width));
              },
            },
          },
        },
        plugins: {
          legend: { display: chart.series.length > 1, position: "bottom" },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${number.format(item.parsed.x)}` } },
        },
      },
    });
  }

  // Ticks on round times (a minute to a day apart), as many as the chart's width allows.
  const TICK_MINUTES = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720, 1440];
  function roundTicks(scale) {
    const wanted = scale.width < 500 ? 4 : 8;
    const range = scale.max - scale.min;
    const step = 60000 * (TICK_MINUTES.find((m) => range / (m * 60000) <= wanted) || TICK_MINUTES.at(-1));
    const ticks = [];
    for (let value = Math.ceil(scale.min / step) * step; value <= scale.max; value += step) ticks.push({ value });
    scale.ticks = ticks;
  }

  function stepChart(canvas, box, chart) {
    const times = chart.labels.map(ms);
    const datasets = chart.series.map((series, i) => ({
      label: series.name,
      data: series.values.map((y, j) => ({ x: times[j], y })),
      stepped: true,
      borderColor: STEP_COLOURS[i % STEP_COLOURS.length],
      backgroundColor: i === 0 ? "rgba(11, 95, 165, 0.12)" : "transparent",
      // The first series is the count; the others are thresholds, dashed.
      borderWidth: i === 0 ? 2 : 1.5,
      borderDash: i === 0 ? [] : [6, 4],
      pointRadius: 0,
      fill: i === 0 ? "origin" : false,
    }));
    const first = times[0];
    const last = Math.max(times[times.length - 1], first + 60000);
    return new Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            min: first,
            max: last,
            afterBuildTicks: roundTicks,
            ticks: { callback: (value) => timeFormat.format(value), maxRotation: 0 },
            title: { display: true, text: `Time (${report.timezone})` },
          },
          // Some headroom, so that a threshold at the top of the range is not drawn on the frame.
          y: { beginAtZero: true, grace: "5%", ticks: { precision: 0 } },
        },
        plugins: {
          legend: { display: chart.series.length > 1, position: "bottom", labels: { boxHeight: 2 } },
          tooltip: {
            callbacks: { title: (items) => (items.length ? dayTimeFormat.format(items[0].parsed.x) : "") },
          },
        },
      },
    });
  }

  function drawCharts() {
    if (typeof Chart === "undefined") {
      // The chart library did not load: show each chart's figures as its table instead of an empty frame.
      for (const box of document.querySelectorAll(".stats-chart")) box.hidden = true;
      for (const figures of document.querySelectorAll(".chart-figures")) figures.open = true;
      return;
    }
    for (const chart of report.charts) {
      const box = document.getElementById(`box-${chart.key}`);
      const canvas = document.getElementById(`chart-${chart.key}`);
      if (!box || !canvas || !chart.labels.length) continue;
      (chart.kind === "step" ? stepChart : barChart)(canvas, box, chart);
    }
  }

  // A session belongs to one segment: offer only the sessions of the segment chosen.
  function linkFilters() {
    const segment = document.getElementById("f-segment");
    const session = document.getElementById("f-session");
    if (!segment || !session) return;
    const sync = () => {
      for (const option of session.querySelectorAll("option[data-segment]")) {
        const hidden = segment.value !== "" && option.dataset.segment !== segment.value;
        option.hidden = hidden;
        option.disabled = hidden;
        if (hidden && option.selected) session.value = "";
      }
      for (const group of session.querySelectorAll("optgroup")) {
        group.hidden = ![...group.querySelectorAll("option")].some((option) => !option.hidden);
      }
    };
    segment.addEventListener("change", sync);
    sync();
  }

  linkFilters();
  drawCharts();
})();
