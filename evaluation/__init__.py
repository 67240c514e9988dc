"""The offline generator's evaluation: a checked-in set of varied trips and what each must contain."""
