"""calculator のテスト: 正しい計算と、安全のための拒否 (名前、属性、巨大な指数、長い入力)。"""

from __future__ import annotations

import math

import pytest

from tools.calculator import MAX_EXPRESSION_LENGTH, calculator
from tools.registry import ToolExecutionError


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("(1 + 2) * 3 / 4", 2.25),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("-3 ** 2", -9),
        ("+5 - -5", 10),
        ("2 ** 10", 1024),
        ("2 ^ 10", 1024),
        ("2 ** -1", 0.5),
        ("1.5e3 + 0.5", 1500.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 2)", 3.14),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log10(1000)", 3.0),
        ("１２×３", 36),
        ("１０÷４", 2.5),
        ("  (2)  ", 2),
    ],
)
def test_arithmetic(expression, expected):
    """算術式を正しく計算する (全角数字と × ÷ も)。"""
    assert calculator(expression) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("0.1 + 0.2", 0.3), ("1 / 3", 0.333333333333333), ("2 ** 0.5 * 2 ** 0.5", 2.0), ("10 / 2", 5.0)],
)
def test_float_results_are_rounded_to_15_significant_digits(expression, expected):
    """浮動小数点の端数は 15 桁に丸めて返す (モデルに 0.30000000000000004 を見せない)。"""
    assert calculator(expression) == expected


def test_sin_of_pi_is_close_to_zero():
    """数学関数と定数を組み合わせられる。"""
    assert math.isclose(calculator("sin(pi)"), 0.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('echo hi')", "not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("(1).real", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("math.sqrt(4)", "not allowed"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("1 < 2", "not allowed"),
        ("1 << 100", "not allowed"),
        ("sqrt(x=4)", "keyword arguments"),
        ("sqrt(1, 2)", "wrong number of arguments"),
        ("1 +", "not a valid arithmetic expression"),
        ("", "empty"),
    ],
)
def test_unsafe_or_invalid_expressions_are_refused(expression, reason):
    """名前、属性、任意の呼び出し、数以外のリテラルは拒否され、理由が分かる。"""
    with pytest.raises(ToolExecutionError, match=reason):
        calculator(expression)


@pytest.mark.parametrize("expression", ["9 ** 9 ** 9", "10 ** 100000", "2 ** 5000", "(10 ** 1000) ** 5"])
def test_huge_powers_are_refused_before_computing(expression):
    """巨大なべき乗は計算する前に断る (サーバーを止めない)。"""
    with pytest.raises(ToolExecutionError, match=r"too large|exponent"):
        calculator(expression)


def test_huge_products_are_refused():
    """許されるべき乗どうしの積で大きな値を作っても、途中の値の上限で止まる。"""
    with pytest.raises(ToolExecutionError, match="too large"):
        calculator("(10 ** 999) * (10 ** 999)")


def test_float_overflow_is_a_clear_error():
    """浮動小数点のオーバーフローも分かりやすいエラー。"""
    with pytest.raises(ToolExecutionError, match=r"too large|finite"):
        calculator("10.0 ** 400")
    with pytest.raises(ToolExecutionError, match=r"finite|too large"):
        calculator("1e308 * 10")


def test_long_input_is_refused():
    """上限より長い式は解析もしない。"""
    with pytest.raises(ToolExecutionError, match="longer than"):
        calculator("1+" * MAX_EXPRESSION_LENGTH + "1")


def test_deep_nesting_is_refused_cleanly():
    """深い入れ子は (パーサの上限でも) きれいなエラーになる。"""
    with pytest.raises(ToolExecutionError):
        calculator("(" * 240 + "1" + ")" * 240)


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "5 % 0", "0 ** -1"])
def test_division_by_zero_is_a_clear_error(expression):
    """ゼロ除算は分かりやすいエラー。"""
    with pytest.raises(ToolExecutionError, match="division by zero"):
        calculator(expression)


def test_math_domain_error_is_a_clear_error():
    """定義域外 (負の数の平方根) も分かりやすいエラー。"""
    with pytest.raises(ToolExecutionError, match="math error"):
        calculator("sqrt(-1)")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("(" * 10000 + "1" + ")" * 10000, "longer than"),
        ("(" * 240 + "1" + ")" * 240, "not a valid arithmetic expression"),
        ("9**9**9**9", "exponent larger than"),
        ("9 ** 9 ** 9 ** 9 ** 9", "exponent larger than"),
        ("-" * 499 + "1", "nested more than"),
        ("+-" * 249 + "1", "nested more than"),
        ("-" * 101 + "1", "nested more than"),
        ("-(" * 120 + "1" + ")" * 120, "nested more than"),
        ("*".join(["(10**900)"] * 20), "too large"),
        ("(2**2000)*(2**2000)*(2**2000)", "too large"),
        ("((2**3999))*2*2*2", "too large"),
        ("9.9 ** 9999", "too large"),
        ("1e308 * 1e308", "finite"),
        ("10**10000 / 10**10000", "too large"),
        ("sqrt(" * 120 + "4" + ")" * 120, "longer than"),
        ("~1", "not allowed"),
        ("1" * 501, "longer than"),
    ],
)
def test_hostile_inputs_get_a_clean_error(expression, reason):
    """敵対的な入力 (深い入れ子、巨大な指数、長い入力、階乗のような巨大な積、単項演算の連鎖) はどれも
    計算を始める前か途中の上限で、理由の分かる ToolExecutionError になる (サーバーを止めない)。"""
    with pytest.raises(ToolExecutionError, match=reason):
        calculator(expression)


def test_hostile_inputs_through_the_registry_are_error_results():
    """レジストリ経由でも同じ: 例外はツールの誤り (ToolExecutionError) で、スタックトレースを含まない。"""
    from tools.registry import default_registry

    registry = default_registry()
    for expression in ("9**9**9**9", "(" * 10000 + ")" * 10000, "-" * 499 + "1"):
        with pytest.raises(ToolExecutionError) as info:
            registry.call("calculator", {"expression": expression})
        assert "Traceback" not in str(info.value)


def test_nesting_up_to_the_limit_still_computes():
    """上限の内側の入れ子 (単項演算 98 段) は計算する。"""
    assert calculator("-" * 98 + "1") == 1


def test_long_but_bounded_products_still_compute():
    """上限の内側の大きな積は計算する (上限は敵対的な入力だけを止める)。"""
    assert calculator("*".join(["99999999"] * 20)) == 99999999**20
