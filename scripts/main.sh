#!/usr/bin/env bash
# bptt's main job. Until training lands: answer every seed question with the library's numbers.
source "$(dirname "$0")/env.sh"
python examples/seed_questions.py "$@"
