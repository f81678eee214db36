"""``make bench``: measurements (:mod:`.measure`), the energy estimate (:mod:`.energy`),
plots (:mod:`.plots`) and the report (:mod:`.report`); run with ``python -m eventconv.bench``.
"""
