"""recaudit: audit LLM-based recommenders for fairness, bias and robustness."""

__version__ = "0.1.0"
