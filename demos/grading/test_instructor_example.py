"""An instructor's own pytest file built on microgradx.strategies: compare a course engine with microgradx.

Run with ``pytest demos/grading/test_instructor_example.py``; replace ``micrograd.engine.Value`` by the course's
reference engine. The strategies draw straight-line programs with shared subexpressions, simplest ops first,
so Hypothesis shrinks any disagreement to a minimal expression.
"""

import math

from hypothesis import given, settings
from micrograd.engine import Value as CourseValue

from microgradx.strategies import STUDENT_PARAMS, number_programs, pairs, programs, reuse_programs

OPS = ("add", "mul", "sub", "neg", "div", "pow", "relu")  # what micrograd 0.1.0 has


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=50, deadline=None)
@given(pairs(programs(OPS, params=STUDENT_PARAMS), CourseValue))
def test_same_values_and_gradients(pair):
    program, (out, leaves), (ref_out, ref_leaves) = pair  # course engine, then microgradx
    out.backward()
    ref_out.backward()
    assert close(out.data, ref_out.data), program.formula()
    for leaf, ref in zip(leaves, ref_leaves):
        assert close(leaf.grad, ref.grad), program.formula()


@settings(max_examples=30, deadline=None)
@given(pairs(reuse_programs("relu"), CourseValue))
def test_reuse_through_relu_accumulates(pair):
    program, (out, leaves), (ref_out, ref_leaves) = pair  # course engine, then microgradx
    out.backward()
    ref_out.backward()
    assert [leaf.grad for leaf in leaves] == [ref.grad for ref in ref_leaves], program.formula()


@settings(max_examples=30, deadline=None)
@given(pairs(number_programs("sub"), CourseValue))
def test_numbers_on_either_side(pair):
    program, (out, _), (ref_out, _) = pair
    assert close(out.data, ref_out.data), program.formula()
