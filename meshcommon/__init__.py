"""What every meshvpn part shares: the syntax of keys and endpoints and the proof of key possession.

Pure and dependency-light: control/, agent/ and chat/ may import this package; it imports none of them.
"""
