"""The public surfaces of steerlab.prefs and steerlab.stats: every name resolves, key names exported."""

import steerlab.prefs as prefs
import steerlab.stats as stats


def test_all_names_resolve_and_key_names_are_exported():
    for mod in (prefs, stats):
        assert all(hasattr(mod, name) for name in mod.__all__)
        assert len(set(mod.__all__)) == len(mod.__all__)
    assert {"fit_thurstonian", "run_active_learning", "PairCounts", "first_position_rate"} <= set(prefs.__all__)
    assert {"icc_table", "kl_from_uniform", "task_consistency", "mann_whitney"} <= set(stats.__all__)
