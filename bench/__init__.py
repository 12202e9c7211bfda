"""Repeatable benchmarks. Each prints one JSON object per result line: name, value, unit, params."""
