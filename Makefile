# The two commands the README leads with. Each sets up everything it needs on a fresh machine.
.PHONY: run test lint bench

# The Ray tests start a real cluster. Some Ray agents listen on every interface whatever --node-ip-address
# says, so it runs in a private network namespace with only loopback; the PID namespace scopes `ray stop`
# (which finds Ray processes by name) to that cluster, and the kernel ends whatever is left when it exits.
RAY_NAMESPACE = unshare --net --pid --fork --mount-proc

run:  ## set up (runtime deps only) and start the service on the embedded default
	scripts/bootstrap.sh
	.venv/bin/itmstream serve

test:  ## set up (dev + train + ray extras, ffmpeg) and run the whole test suite; Ray tests in a private netns
	scripts/bootstrap.sh dev,train,ray --apt
	.venv/bin/ruff check .
	.venv/bin/mypy --strict service clients
	.venv/bin/python -m pytest --doctest-modules service/colour
	.venv/bin/python -m pytest -m "not ray" --durations=15
	$(RAY_NAMESPACE) sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 .venv/bin/python -m pytest -m ray tests/service/scaleout'

lint:
	scripts/bootstrap.sh dev,train,ray
	.venv/bin/ruff check .

bench:
	scripts/bootstrap.sh dev,train,ray
	.venv/bin/python -m bench.colour
