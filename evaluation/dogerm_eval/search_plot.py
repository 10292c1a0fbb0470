"""``search.png``: what a search evaluated, drawn by the space's shape.

- one parameter: the objective (and the constraint's metric) against it, with the dev intervals;
- two parameters: the evaluated points in the plane, coloured by the objective, over a grid's heatmap of the
  objective when a sweep table of the same parameters is given (``dogerm-eval sweep --in-memory --grid``'s CSV);
- depth schedules: each evaluated schedule, lambda against depth (knots spread over the layers), the chosen one bold;
- otherwise: the objective in evaluation order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dogerm_eval.criteria import Objective
from dogerm_eval.space import SearchSpace


def _short(key: str) -> str:
    """``lambda[/path/to/model]`` -> ``lambda[model]``: a column named by the model's last path component."""
    name, _, model = key.partition("[")
    return f"{name}[{model.rstrip(']').rstrip('/').rsplit('/', 1)[-1]}]" if model else key


def _grid_surface(grid: Path, keys: list[str], objective: Objective) -> tuple[list[float], list[float], list[float]]:
    """(x, y, objective) of a sweep table whose parameter columns are the two keys (matched by name, or by the
    models' last path components)."""
    import pandas as pd

    from dogerm_eval.errors import BenchmarkError

    frame = pd.read_csv(grid, float_precision="round_trip")
    columns = []
    for key in keys:
        matches = [c for c in frame.columns if c == key] or [c for c in frame.columns if _short(c) == _short(key)]
        if len(matches) != 1:
            raise BenchmarkError(f"--grid-results {grid}: no single column for {key} (it has {list(frame.columns)})")
        columns.append(matches[0])
    missing = [m for m in objective.metrics if m not in frame.columns]
    if missing:
        raise BenchmarkError(f"--grid-results {grid}: no column for the objective's {', '.join(missing)} (it has "
                             f"{list(frame.columns)}); give the sweep table of the same benchmark")
    rows = frame.dropna(subset=[*columns, *objective.metrics])
    try:  # a table written elsewhere: its cells must be numbers
        rows = rows.astype({name: float for name in (*columns, *objective.metrics)})
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"--grid-results {grid}: a parameter or objective column holds a non-number ({exc})") \
            from None
    return rows[columns[0]].tolist(), rows[columns[1]].tolist(), [objective.value(r) for r in rows.to_dict("records")]


def check_grid(grid: Path, space: SearchSpace, objective: Objective) -> None:
    """Refuse a ``--grid-results`` table the plot cannot draw, before anything is evaluated."""
    from dogerm_eval.errors import BenchmarkError

    if len(space.parameters) != 2 or space.knotted:
        raise BenchmarkError("--grid-results is drawn under searches of two parameters; this one has "
                             f"{len(space.parameters)}")
    try:
        _grid_surface(grid, [p.key for p in space.parameters], objective)
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"--grid-results {grid}: cannot read it as a sweep table ({exc})") from None


def plot_search(path: Path, record: Mapping[str, Any], space: SearchSpace, grid: Path | None = None) -> Path:
    """Draw ``record`` (what ``search.json`` holds) into ``path``."""
    from matplotlib.figure import Figure

    objective = Objective.parse(record["settings"]["objective"])
    points, chosen = record["points"], record["chosen"]
    figure = Figure(figsize=(6.4, 4.8))
    axes = figure.add_subplot()
    keys = [p.key for p in space.parameters]
    values = [objective.value(p["metrics"]) for p in points]
    if space.knotted:
        for colour, target in enumerate(dict.fromkeys(q.target for q in space.parameters)):
            knots = [q for q in space.parameters if q.target == target]
            xs = [q.knot / (q.knots - 1) if q.knot is not None else 0.5 for q in knots]
            for p in points:  # one colour per parameter; the chosen schedule bold
                if all(q.key in p["params"] for q in knots):
                    bold = p["params"] == chosen["params"]
                    axes.plot(xs, [p["params"][q.key] for q in knots], marker="o", color=f"C{colour}",
                              linewidth=2.5 if bold else 0.6, alpha=1.0 if bold else 0.25,
                              label=f"{target} (chosen)" if bold else None, zorder=3 if bold else 2)
        axes.set_xlabel("depth (first layer 0, last layer 1)")
        axes.set_ylabel("parameter value")
    elif len(keys) == 1:
        names = [objective.name, *([record["settings"]["constraint_metric"]] if record["settings"].get(
            "constraint_metric") else [])]
        for name in dict.fromkeys(names):
            evaluated = [p for p in points if name in p["metrics"] and keys[0] in p["params"]]
            ys = [p["metrics"][name] for p in evaluated]
            bounds = [p["intervals"].get(name, (y, y)) for p, y in zip(evaluated, ys)]
            axes.errorbar([p["params"][keys[0]] for p in evaluated], ys,
                          yerr=[[y - b[0] for y, b in zip(ys, bounds)], [b[1] - y for y, b in zip(ys, bounds)]],
                          fmt="o", capsize=3, label=f"{name} (dev)")
        if keys[0] in chosen["params"]:
            axes.axvline(chosen["params"][keys[0]], linestyle="--", color="gray",
                         label=f"chosen {keys[0]} {chosen['params'][keys[0]]:g}")
        axes.set_xlabel(keys[0])
    elif len(keys) == 2:
        if grid is not None:
            xs, ys, zs = _grid_surface(grid, keys, objective)
            surface = axes.tricontourf(xs, ys, zs, levels=12, cmap="Greys", alpha=0.6)
            figure.colorbar(surface, ax=axes, label=f"{objective.name} (grid)")
        evaluated = [(p, v) for p, v in zip(points, values) if all(k in p["params"] for k in keys)]
        dots = axes.scatter([p["params"][keys[0]] for p, _ in evaluated], [p["params"][keys[1]] for p, _ in evaluated],
                            c=[v for _, v in evaluated], cmap="viridis", edgecolors="black", zorder=3)
        figure.colorbar(dots, ax=axes, label=f"{objective.name} (dev)")
        for order, (p, _) in enumerate(evaluated):
            axes.annotate(str(order), (p["params"][keys[0]], p["params"][keys[1]]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
        if all(k in chosen["params"] for k in keys):
            axes.scatter([chosen["params"][keys[0]]], [chosen["params"][keys[1]]], marker="*", s=250, color="red",
                         zorder=4, label="chosen")
        axes.set_xlabel(keys[0])
        axes.set_ylabel(keys[1])
    else:
        axes.plot(range(len(values)), values, marker="o", label=f"{objective.name} (dev)")
        axes.set_xlabel("evaluation")
    axes.set_title(f"{record['settings']['method']} search: {objective.name}", fontsize=9)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
