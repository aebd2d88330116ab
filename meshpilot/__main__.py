from meshpilot.cli.main import main

main()
