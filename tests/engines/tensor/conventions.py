"""A correct Tensor engine in another course's conventions: the array in .value (float32), .grad None until
backward, reductions with dim=/keepdim=, transpose() as a method, reshape taking a tuple, and backward(grad)
taking the seed. None of this is a mistake."""

import numpy as np


def _sum_to(g, shape):
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True) if shape else g


class Tensor:
    def __init__(self, value, parents=(), grad_fns=()):
        self.value = np.asarray(value, dtype=np.float32)
        self.grad = None
        self.parents, self.grad_fns = parents, grad_fns

    def _add_grad(self, g):
        g = np.asarray(g, dtype=np.float32)
        self.grad = g if self.grad is None else self.grad + g

    def __add__(self, o):
        return Tensor(self.value + o.value, (self, o),
                      (lambda g: _sum_to(g, self.value.shape), lambda g: _sum_to(g, o.value.shape)))

    def __sub__(self, o):
        return Tensor(self.value - o.value, (self, o),
                      (lambda g: _sum_to(g, self.value.shape), lambda g: _sum_to(-g, o.value.shape)))

    def __mul__(self, o):
        return Tensor(self.value * o.value, (self, o),
                      (lambda g: _sum_to(g * o.value, self.value.shape),
                       lambda g: _sum_to(g * self.value, o.value.shape)))

    def __truediv__(self, o):
        return Tensor(self.value / o.value, (self, o),
                      (lambda g: _sum_to(g / o.value, self.value.shape),
                       lambda g: _sum_to(-g * self.value / o.value ** 2, o.value.shape)))

    def __matmul__(self, o):
        return Tensor(self.value @ o.value, (self, o), (lambda g: g @ o.value.T, lambda g: self.value.T @ g))

    def __pow__(self, p):
        return Tensor(self.value ** p, (self,), (lambda g: p * self.value ** (p - 1) * g,))

    def sum(self, dim=None, keepdim=False):
        def back(g):
            if dim is not None and not keepdim:
                g = np.expand_dims(g, dim)
            return np.broadcast_to(g, self.value.shape)
        return Tensor(self.value.sum(axis=dim, keepdims=keepdim), (self,), (back,))

    def mean(self, dim=None, keepdim=False):
        n = self.value.size / np.size(self.value.sum(axis=dim))
        total = self.sum(dim, keepdim)
        return Tensor(total.value / n, (self,), (lambda g: total.grad_fns[0](g) / n,))

    def reshape(self, shape):
        return Tensor(self.value.reshape(shape), (self,), (lambda g: g.reshape(self.value.shape),))

    def transpose(self):
        return Tensor(self.value.T, (self,), (lambda g: g.T,))

    def exp(self):
        e = np.exp(self.value)
        return Tensor(e, (self,), (lambda g: g * e,))

    def log(self):
        return Tensor(np.log(self.value), (self,), (lambda g: g / self.value,))

    def relu(self):
        return Tensor(np.maximum(self.value, 0), (self,), (lambda g: g * (self.value > 0),))

    def backward(self, grad):
        order, seen = [], set()
        stack = [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack += [(p, False) for p in node.parents]
        grads = {id(self): np.asarray(grad, dtype=np.float32)}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if not node.parents:
                node._add_grad(g)
            for p, fn in zip(node.parents, node.grad_fns):
                c = fn(g)
                grads[id(p)] = c if id(p) not in grads else grads[id(p)] + c
