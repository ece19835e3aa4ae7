"""The Spark engine of linkage (``--engine spark``): the local engine's functions run in Spark.

:class:`linkage.spark.linker.SparkLinker` is a :class:`linkage.linker.Linker` whose pair-heavy
steps (standardisation, blocking, comparison, the components of iterative blocking, the
clustering of each component) run in Spark executors, over the same standardisers, comparison
kernels and cluster code; everything else of a run is the local engine's. Data crosses between
the driver and Spark as Parquet in a working folder. pyspark is imported only here, and only
when the Spark engine is chosen (:func:`linkage.engine.open_linker`).
"""
