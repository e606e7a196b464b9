# The two commands the README leads with. Each sets up everything it needs on a fresh machine.
.PHONY: run test lint bench

run:  ## set up (runtime deps only) and start the service on the embedded default
	scripts/bootstrap.sh
	.venv/bin/itmstream serve

test:  ## set up (dev + train extras, ffmpeg) and run the whole test suite
	scripts/bootstrap.sh dev,train --apt
	.venv/bin/ruff check .
	.venv/bin/mypy --strict service clients
	.venv/bin/python -m pytest --doctest-modules service/colour
	.venv/bin/python -m pytest

lint:
	scripts/bootstrap.sh dev,train
	.venv/bin/ruff check .

bench:
	scripts/bootstrap.sh dev,train
	.venv/bin/python -m bench.colour
