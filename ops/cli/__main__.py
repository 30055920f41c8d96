from supplybus.ops.cli import run

run()
