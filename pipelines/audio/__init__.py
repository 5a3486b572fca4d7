"""Sound: text to speech (Fish Speech, our own implementation) and music (ACE-Step)."""
