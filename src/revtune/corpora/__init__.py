"""Corpora: every format read into :class:`Revision` records (see ``loading.read_corpus``)."""
from revtune.corpora.loading import (FORMATS, SAMPLE_SPLITS, document_split, is_multi_label, label_names,
                                     load_sample, read_corpus, sample_path, sniff, split_three,
                                     stratified_split, upsample)
from revtune.corpora.record import Revision

__all__ = ["FORMATS", "SAMPLE_SPLITS", "Revision", "document_split", "is_multi_label", "label_names",
           "load_sample", "read_corpus", "sample_path", "sniff", "split_three", "stratified_split",
           "upsample"]
