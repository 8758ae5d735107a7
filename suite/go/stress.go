package main

func stress(path accessPath) { fail("not yet") }
