"""Sound: text to speech (Fish Speech, from networks/) and music (ACE-Step)."""
