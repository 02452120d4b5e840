"""Switching a TC-Padé config's mode switches the settings that mode fills in, and keeps what was set by hand."""

from tcpade_core import TCPadeConfig
from tcpade_core.config import DEFAULT_READING, PAPER_LITERAL


def test_with_mode_switches_the_modes_defaults():
    assert TCPadeConfig().with_(mode="paper_literal") == TCPadeConfig(mode="paper_literal")
    assert TCPadeConfig(mode="paper_literal").with_(mode="default") == TCPadeConfig()
    lit = TCPadeConfig().with_(mode="paper_literal")
    assert {k: getattr(lit, k) for k in PAPER_LITERAL} == PAPER_LITERAL  # every switch, not only some


def test_with_mode_keeps_settings_made_by_hand():
    c = TCPadeConfig(numerator="recent", theta=0.7).with_(mode="paper_literal")
    assert c.numerator == "recent" and c.theta == 0.7 and c.mode == "paper_literal"
    assert {k: getattr(c, k) for k in PAPER_LITERAL if k != "numerator"} == {
        k: v for k, v in PAPER_LITERAL.items() if k != "numerator"
    }
    # a change of another field leaves the mode's settings alone
    d = TCPadeConfig().with_(theta=0.5)
    assert {k: getattr(d, k) for k in DEFAULT_READING} == DEFAULT_READING


def test_describe_lists_every_setting_that_differs():
    from tcpade_core import make_config

    assert make_config("tcpade").describe() == "tcpade(mode=default, theta=1.0, interval=4)"
    d = make_config("tcpade", lam=5.0, beta=0.1).with_(warmup_steps=3).describe()
    assert d == "tcpade(mode=default, theta=1.0, interval=4, lam=5.0, beta=0.1, warmup_steps=3)"
    assert "numerator=literal" in make_config("tcpade", numerator="literal").describe()
    assert (
        make_config("tcpade", mode="official").describe() == "tcpade(official, threshold=1.4, interval=8, start_step=4)"
    )
