"""Data from a teacher: `pixiu data generate` (self-instruct, evol, self-chat, answer, rank) and `pixiu data filter`.

teacher.py talks to the teacher (an OpenAI-compatible endpoint or a local engine) with pacing, retries and cost;
methods/ holds one module per generation method in one registry; output.py appends items with provenance and
resumes a killed run; filter.py rates, deduplicates and reports. Nothing here imports torch unless a local engine
is the teacher.
"""
