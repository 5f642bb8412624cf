"""Experiments: causal tracing of facts, CounterFact-style evaluation of edits, figures."""
