"""安全な電卓ツール: ``ast`` で式を解析し、許した節点だけを自前で評価する (``eval`` は使わない)。

許すもの: 数 (int / float)、``+ - * / // % **``、単項の ``+ -``、括弧、許可リストの数学関数と定数。
名前 (許可リスト外)、属性、添字、文字列、ラムダ、内包表記などはすべて拒否する。
入力の長さ、べき乗の指数、結果の大きさに上限を設け、巨大な計算でサーバーを止めさせない。
全角数字や ``×`` ``÷`` は NFKC 正規化と置き換えで受け付ける (日本語の入力に合わせる)。
"""

from __future__ import annotations

import ast
import math
import operator
import unicodedata
from collections.abc import Callable
from typing import Any

from tools.registry import ToolExecutionError

MAX_EXPRESSION_LENGTH = 500
MAX_EXPONENT = 10_000
# 整数の結果と途中の値の上限 (ビット数)。約 1,200 桁
MAX_INT_BITS = 4_000
# 式の入れ子 (括弧、単項演算の連鎖、関数の呼び出し) の深さの上限。Python の再帰の上限に頼らずに断る
MAX_NESTING = 100

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "degrees": math.degrees,
    "radians": math.radians,
    "min": min,
    "max": max,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_REPLACEMENTS = {"×": "*", "÷": "/", "−": "-", "^": "**"}


def calculator(expression: str) -> int | float:
    """算術式を計算して数を返す。四則演算、``//``、``%``、``**``、括弧、sqrt・log・sin などの数学関数、
    pi・e が使える (変数、属性、その他の関数は使えない)。

    Args:
        expression: 計算する式 (例 ``(1 + 2) * 3 / 4``、``sqrt(2) ** 2``)。
    """
    tree = _parse(expression)
    try:
        value = _Evaluator().eval(tree.body)
    except ZeroDivisionError:
        raise ToolExecutionError("division by zero (ゼロで割ることはできません)") from None
    except OverflowError:
        raise ToolExecutionError("the result is too large (結果が大きすぎます)") from None
    except RecursionError:
        raise ToolExecutionError("the expression is nested too deeply (式の入れ子が深すぎます)") from None
    except ValueError as exc:
        raise ToolExecutionError(f"math error: {exc} (計算できない値です)") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolExecutionError("the result is not a finite number (結果が有限の数になりません)")
    if isinstance(value, float):
        # 2 進浮動小数点の端数 (0.1 + 0.2 = 0.30000000000000004) をモデルに見せないよう 15 桁に丸める
        value = float(f"{value:.15g}")
    return value


def _parse(expression: str) -> ast.Expression:
    """長さを確かめ、全角などを正規化してから式として解析する。"""
    if not isinstance(expression, str) or not expression.strip():
        raise ToolExecutionError("expression is empty (式が空です)")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolExecutionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters (式が長すぎます)")
    text = unicodedata.normalize("NFKC", expression)
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    try:
        return ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolExecutionError(f"not a valid arithmetic expression: {expression!r} (式を解釈できません)") from None


class _Evaluator:
    """許可した節点だけを評価する (それ以外は ToolExecutionError)。入れ子は ``MAX_NESTING`` 段まで。"""

    def __init__(self) -> None:
        """いまの入れ子の深さを 0 から数える。"""
        self.depth = 0

    def eval(self, node: ast.AST) -> int | float:
        """節点の型ごとのメソッド (``_Constant`` など) に振り分ける。"""
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise ToolExecutionError(
                f"'{type(node).__name__}' is not allowed in a calculator expression (使えない構文です)"
            )
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise ToolExecutionError(
                    f"the expression is nested more than {MAX_NESTING} levels deep (式の入れ子が深すぎます)"
                )
            return _bounded(method(node))
        finally:
            self.depth -= 1

    def _Constant(self, node: ast.Constant) -> int | float:
        """数のリテラル (真偽値、複素数、文字列は不可)。"""
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolExecutionError(f"only numbers are allowed, not {node.value!r} (数だけが使えます)")
        return node.value

    def _BinOp(self, node: ast.BinOp) -> int | float:
        """二項演算 (べき乗は評価の前に大きさを見積もる)。"""
        func = _BINARY.get(type(node.op))
        if func is None:
            raise ToolExecutionError(f"operator '{type(node.op).__name__}' is not allowed (使えない演算子です)")
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return func(left, right)

    def _UnaryOp(self, node: ast.UnaryOp) -> int | float:
        """単項の + と -。"""
        func = _UNARY.get(type(node.op))
        if func is None:
            raise ToolExecutionError(f"operator '{type(node.op).__name__}' is not allowed (使えない演算子です)")
        return func(self.eval(node.operand))

    def _Name(self, node: ast.Name) -> float:
        """許可リストの定数 (pi, e, tau) だけ。"""
        if node.id not in _CONSTANTS:
            raise ToolExecutionError(f"unknown name '{node.id}' (使える定数: {', '.join(_CONSTANTS)})")
        return _CONSTANTS[node.id]

    def _Call(self, node: ast.Call) -> int | float:
        """許可リストの関数の、位置引数だけの呼び出し。"""
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise ToolExecutionError(f"function '{shown}' is not allowed (使える関数: {', '.join(_FUNCTIONS)})")
        if node.keywords:
            raise ToolExecutionError("keyword arguments are not allowed (キーワード引数は使えません)")
        args = [self.eval(arg) for arg in node.args]
        try:
            return _FUNCTIONS[node.func.id](*args)
        except TypeError:
            raise ToolExecutionError(f"wrong number of arguments for '{node.func.id}' (引数の数が違います)") from None


def _check_power(base: int | float, exponent: int | float) -> None:
    """べき乗の結果が上限を超えそうなら計算する前に断る。"""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolExecutionError(f"exponent larger than {MAX_EXPONENT} is not allowed (指数が大きすぎます)")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise ToolExecutionError("the result is too large (結果が大きすぎます)")


def _bounded(value: int | float) -> int | float:
    """途中の値が上限を超えていないか確かめる。"""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolExecutionError("the result is too large (結果が大きすぎます)")
    return value
