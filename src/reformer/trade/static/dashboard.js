"use strict";
// The dashboard's page: poll /api/status; when the trader has added a step (or another symbol is chosen) fetch
// that symbol's market and the account and hand them to plotly. Texts from the state go in through textContent
// only, so a symbol's name can never become markup.

const POLL_MS = 1000;
const BARS = 500;
const seen = { step: undefined, symbol: null, drawn: null, money: "quote", initial: null };
const CONFIG = { responsive: true, displaylogo: false };
const BASE = {
  margin: { l: 70, r: 30, t: 50, b: 50 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
  legend: { orientation: "h", y: -0.2 }, hovermode: "closest",
};
const COLORS = { long: "#14803c", short: "#b42318", line: "#2f5bd3", muted: "#9aa4b8", ink: "#1d2433" };

const $ = (id) => document.getElementById(id);
const none = (value) => value === null || value === undefined;

function money(value) {
  if (none(value)) return "–";
  const digits = seen.money === "coin" ? 6 : 2;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function price(value) {
  if (none(value)) return "–";
  const size = Math.abs(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: size >= 1000 ? 2 : size >= 1 ? 4 : 8 });
}

function percent(value) {
  return none(value) || !Number.isFinite(value) ? "–" : `${value >= 0 ? "+" : ""}${(100 * value).toFixed(2)} %`;
}

function signed(value, digits) {
  return none(value) ? "–" : `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${url}: HTTP ${response.status}`);
  return body;
}

function setConnection(kind, text) {
  const element = $("connection");
  element.className = kind;
  element.textContent = text;
}

function showStatus(status) {
  seen.money = status.money;
  seen.initial = status.initial_capital;
  $("run").textContent = `${status.symbols.join(", ")} · interval ${status.interval ?? "?"} · ${status.category}`;
  if (!seen.symbol || !status.symbols.includes(seen.symbol)) seen.symbol = status.symbols[0] ?? null;
  const select = $("symbol");
  const listed = Array.from(select.options, (option) => option.value);
  if (listed.join() !== status.symbols.join()) {
    select.replaceChildren(...status.symbols.map((name) => new Option(name, name)));
  }
  select.value = seen.symbol ?? "";
  $("equity").textContent = money(status.equity);
  $("updated").textContent = status.time ? `${status.time} UTC` : "–";
  $("step").textContent = none(status.step) ? "–" : String(status.step);
  $("return").textContent = seen.initial && !none(status.equity) ? percent(status.equity / seen.initial - 1) : "–";
}

function showPosition(position, candles) {
  const element = $("position");
  element.className = `big ${position.side}`;
  element.textContent = position.side === "flat" ? "flat"
    : `${position.side} ${position.units.toLocaleString("en-US", { maximumFractionDigits: 8 })}`;
  const close = candles.close.at(-1);
  $("entry").textContent = none(position.entry_price) ? "–"
    : `${price(position.entry_price)}${position.estimated ? " (≈ the open it began at)" : ""}`
      + (position.entry_time ? ` at ${position.entry_time} UTC` : "");
  $("liquidation").textContent = none(position.liq_price) ? "–"
    : `${price(position.liq_price)} (${percent(position.liq_price / close - 1)} from the last close)`;
  $("last-close").textContent = price(close);
}

function showPrediction(prediction) {
  $("prediction").textContent = prediction ? `${signed(prediction.prediction, 5)} predicted` : "none yet";
  $("confidence").textContent = prediction && !none(prediction.confidence) ? prediction.confidence.toFixed(2) : "–";
  $("target").textContent = prediction ? signed(prediction.target, 2) : "–";
  $("prediction-time").textContent = prediction ? `${prediction.time} UTC (that candle's close)` : "–";
}

function markers(fills, name, symbol, color, label) {
  return {
    type: "scatter", mode: "markers", name, x: fills.map((fill) => fill.time), y: fills.map((fill) => fill.price),
    text: fills.map(label), hovertemplate: "%{text}<br>%{x}<br>%{y}<extra></extra>",
    marker: { symbol, color, size: 13, line: { width: 1, color: COLORS.ink } },
  };
}

function level(y, color, text) {
  return {
    type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color, dash: "dash", width: 1 },
    label: { text, textposition: "end", font: { color, size: 11 } },
  };
}

function drawPrice(market) {
  const { candles, position } = market;
  const traces = [
    { type: "candlestick", name: market.symbol, x: candles.time, open: candles.open, high: candles.high,
      low: candles.low, close: candles.close },
    markers(market.entries.filter((fill) => fill.side === "long"), "long entry", "triangle-up", COLORS.long,
      (fill) => `long entry, ${fill.units} units`),
    markers(market.entries.filter((fill) => fill.side === "short"), "short entry", "triangle-down", COLORS.short,
      (fill) => `short entry, ${fill.units} units`),
    markers(market.exits, "exit", "x", COLORS.ink, (fill) => `${fill.side} exit (${fill.reason}), pnl ${money(fill.pnl)}`),
  ];
  const shapes = [];
  if (position.side !== "flat" && !none(position.entry_price)) {
    if (position.entry_time) {
      traces.push(markers([{ time: position.entry_time, price: position.entry_price }], "open position's entry",
        "star", COLORS.line, () => `open ${position.side}, ${position.units} units`));
    }
    shapes.push(level(position.entry_price, COLORS.line, `entry ${price(position.entry_price)}`));
  }
  const yaxis = { title: { text: "price" } };
  const annotations = [];
  if (position.side !== "flat" && !none(position.liq_price)) {
    const text = `liquidation ${price(position.liq_price)}`;
    const shown = [...candles.low, ...candles.high, position.entry_price].filter((value) => !none(value));
    const [bottom, top] = [Math.min(...shown), Math.max(...shown)];
    const pad = 0.1 * (top - bottom) || 0.01 * Math.abs(top);
    if (position.liq_price >= bottom - pad && position.liq_price <= top + pad) {
      shapes.push(level(position.liq_price, COLORS.short, text));
    } else {
      // a level far from the candles would squash them flat: name it at the chart's edge instead
      const below = position.liq_price < bottom;
      yaxis.range = [bottom - pad, top + pad];
      annotations.push({ xref: "paper", yref: "paper", x: 1, y: below ? 0 : 1, xanchor: "right",
        yanchor: below ? "bottom" : "top", showarrow: false, font: { color: COLORS.short, size: 11 },
        text: `${below ? "▼" : "▲"} ${text} (off the chart)` });
    }
  }
  Plotly.react("price-chart", traces, {
    ...BASE, title: { text: `${market.symbol}: price and fills` }, shapes, annotations, yaxis,
    uirevision: market.symbol, xaxis: { rangeslider: { visible: false } },
  }, CONFIG);
}

function drawEquity(account) {
  Plotly.react("equity-chart", [
    { type: "scatter", mode: "lines", name: "equity", x: account.time, y: account.equity,
      line: { color: COLORS.line } },
    { type: "scatter", mode: "lines", name: "buy & hold (no fees)", x: account.time, y: account.buy_and_hold,
      line: { color: COLORS.muted, dash: "dot" } },
  ], {
    ...BASE, title: { text: "Equity against buy & hold" }, uirevision: "equity",
    yaxis: { title: { text: seen.money === "coin" ? "equity (coin)" : "equity" } },
  }, CONFIG);
  const hold = account.buy_and_hold.at(-1);
  $("hold").textContent = seen.initial && !none(hold) ? percent(hold / seen.initial - 1) : "–";
}

function drawAttention(prediction) {
  const weights = prediction?.attention ?? [];
  const n = weights.length;
  Plotly.react("attention-chart", [{
    type: "bar", name: "attention", x: weights.map((_, i) => i - (n - 1)), y: weights,
    marker: { color: COLORS.line }, hovertemplate: "%{x} bars: %{y:.4f}<extra></extra>",
  }], {
    ...BASE, bargap: 0.05, uirevision: "attention",
    title: { text: n ? `Attention of the latest prediction over its ${n}-bar window`
      : "Attention of the latest prediction: none recorded" },
    xaxis: { title: { text: "bar, relative to the prediction's candle (0)" }, ...(n <= 20 ? { dtick: 1 } : {}) },
    yaxis: { title: { text: "weight" } },
  }, CONFIG);
}

function showTrades(trades) {
  const cells = (trade) => [trade.symbol, trade.side, `${trade.entry_time}`, price(trade.entry_price),
    `${trade.exit_time}`, price(trade.exit_price), money(trade.pnl), percent(trade.return), trade.exit_reason];
  $("trades").tBodies[0].replaceChildren(...trades.slice(0, 20).map((trade) => {
    const row = document.createElement("tr");
    row.className = trade.side;
    for (const text of cells(trade)) row.insertCell().textContent = text;
    return row;
  }));
}

async function refresh() {
  const symbol = encodeURIComponent(seen.symbol);
  const [market, account] = await Promise.all([getJSON(`/api/market/${symbol}?bars=${BARS}`),
    getJSON("/api/account")]);
  showPosition(market.position, market.candles);
  showPrediction(market.prediction);
  drawPrice(market);
  drawEquity(account);
  drawAttention(market.prediction);
  showTrades(account.trades);
}

async function poll() {
  try {
    const status = await getJSON("/api/status");
    showStatus(status);
    if (!status.ready || !seen.symbol) {
      setConnection("waiting", "waiting for the trader's first candle");
    } else {
      if (status.step !== seen.step || seen.symbol !== seen.drawn) {
        const symbol = seen.symbol;
        await refresh();
        seen.step = status.step;
        seen.drawn = symbol;
      }
      setConnection("live", "live");
    }
  } catch (error) {
    setConnection("down", `no answer from the dashboard: ${error.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$("symbol").addEventListener("change", (event) => { seen.symbol = event.target.value; });
poll();
