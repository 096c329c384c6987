"""Equivalent-effect abstraction (Mavor-Parker et al.): a learned forward model maps every state–action pair to
the effect it predicts, pairs with the same effect share one value, and value-based agents learn over effects
instead of pairs — a learned MDP homomorphism that shrinks the table by up to |A|."""
