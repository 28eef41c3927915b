from chaoskit.launch import run

run()
