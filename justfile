# Task runner for those who have `just`; every recipe calls ./dev, which
# works without it.

# Run the demo
demo:
    ./dev demo

# Install what is missing and run the whole test suite (what CI runs)
test:
    ./dev test

# Install the wasm32-wasip2 target and other prerequisites
setup:
    ./dev setup

# Benchmarks (release build)
bench:
    ./dev bench

# Copy wit/ into guest-sdk/wit/ after changing the ABI
sync-wit:
    ./dev sync-wit
