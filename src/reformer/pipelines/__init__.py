"""Pipelines: workflows that join the layers below them (strategy, training, data, model), so that those
layers never import each other upwards.

    from reformer.pipelines import run_backtest          # also `reformer.run_backtest`
    result = run_backtest(model, klines, BacktestConfig(), train_config=TrainConfig(epochs=8))

`run_backtest` walks a `ReformerModel` forward (a `WalkForwardPredictor` with the model's configuration and
the given `TrainConfig`) and hands everything else to `reformer.strategy.run_backtest`. Importing this package
does not load torch: model and training are imported only when a model is passed.

The layers below only look down (`lint-imports`, configured in pyproject.toml, checks it in `make test`, lazy
imports included): `reformer.model` imports neither pandas nor data, api, training or strategy;
`reformer.strategy` imports neither torch nor model or training; `reformer.api` does not import `reformer.data`;
nothing but the CLI itself imports `reformer.cli`. Code that needs two of them together belongs here.
"""

from .backtest import run_backtest, walk_forward_for

__all__ = ["run_backtest", "walk_forward_for"]
