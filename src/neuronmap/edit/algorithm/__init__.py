"""The algorithms: ROME (Meng et al. 2022): the request, context prefixes, key k*, value v*, and the rank-one
update of one MLP output projection (``edit.rome``); MEMIT (Meng et al. 2023): many requests written into a range
of layers at once (``memit.memit``, ``memit_edit.MemitEdit``). Nothing is imported here, so that reading a data
set does not load the model code."""
