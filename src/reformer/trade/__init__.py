"""Paper trading on the exchange's live candles with the backtest's own engine, its state in SQLite, and a
dashboard in the browser.

    reformer trade --paper --checkpoint RUN --symbol BTCUSDT --interval 60 --state runs/paper
    reformer trade report --state runs/paper
    reformer dashboard --state runs/paper

`reformer.trade.paper` runs it (`PaperTrader`, `run_paper`), `reformer.trade.state` keeps it (`PaperState`),
`reformer.trade.report` turns a state into the backtest's statistics, and `reformer.trade.dashboard` serves the
page. Nothing here places an order on an exchange or reads an API key.
"""
