// Components: the standard components and the Host.
