"""The algorithm (ROME, Meng et al. 2022): the request, context prefixes, key k*, value v*, and the rank-one
update of one MLP output projection (``edit.rome``). Nothing is imported here, so that reading a data set does
not load the model code."""
