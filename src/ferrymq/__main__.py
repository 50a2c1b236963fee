from ferrymq.cli import main

main()
