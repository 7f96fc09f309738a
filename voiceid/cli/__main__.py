"""`python -m voiceid.cli`: the same as the `voiceid` command."""

from voiceid.cli import main

main()
