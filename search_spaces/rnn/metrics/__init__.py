"""The RNN space's metrics; importing the package registers them."""

from . import activation, covariance, gradient, jacobian, trained

__all__ = ["activation", "covariance", "gradient", "jacobian", "trained"]
