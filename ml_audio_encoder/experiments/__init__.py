"""Research on top of the codec that is not part of it: the voice classifier on codec codes
(:mod:`.classifier`; the experiment is ``train/voice_classifier.py``, the write-up ``docs/voice_classifier.md``)."""
